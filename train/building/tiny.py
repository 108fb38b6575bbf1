"""The tiny random graft of the tests and smoke runs: a few MB, nothing downloaded.

    python -m train.build --tiny --output build/tiny-graft

`tiny_tokenizer` is an offline byte-level tokenizer carrying the Qwen2-VL and audio special
tokens; `tiny_config` a 2-layer text model, 1-block vision tower and 2-layer Whisper encoder.
"""

from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import WhisperConfig
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

from .folder import AUDIO_SPECIAL_TOKENS, generation_config, make_processor, save_graft, token_ids

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", *AUDIO_SPECIAL_TOKENS,
]  # fmt: skip


def tiny_tokenizer(special_tokens=SPECIAL_TOKENS) -> Qwen2Tokenizer:
    """A byte-level tokenizer with no merges (one token per byte) plus the special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens[1:])})
    tokenizer.eos_token = "<|im_end|>"
    return tokenizer


def tiny_config(tokenizer, audio_downsample=1, projector_type="linear", encode_padding=True) -> Qwen2AudioGraftConfig:
    text = dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2)
    audio = WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500, vocab_size=100,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None,
        init_std=0.3,
    )  # fmt: skip
    return Qwen2AudioGraftConfig(
        text_config=text, vision_config=vision, audio_config=audio, audio_downsample=audio_downsample,
        projector_type=projector_type, max_audio_seconds=120.0, encode_padding=encode_padding, **token_ids(tokenizer),
    )  # fmt: skip


def build_tiny(output: Path, audio_downsample=1, projector_type="linear", seed=0, encode_padding=True):
    """Save a random tiny graft into `output`; returns (model, processor)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, audio_downsample, projector_type, encode_padding)
    model = Qwen2AudioGraftForConditionalGeneration(config).eval()
    model.generation_config = generation_config(tokenizer)
    processor = make_processor(tokenizer, config)
    save_graft(model, processor, output)
    return model, processor

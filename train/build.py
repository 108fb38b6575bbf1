"""Compose an audio graft and save it as a complete remote-code model folder.

    python -m train.build --tiny --output build/tiny-graft
    python -m train.build --llm Qwen/Qwen2-VL-7B-Instruct --encoder openai/whisper-large-v3-turbo \
        --output build/qwen2-vl-7b-audio [--audio-downsample 2 --projector-type mlp]

`--tiny` writes a few-MB random graft with an offline byte-level tokenizer that carries the
Qwen2-VL and audio special tokens: nothing is downloaded. `--llm` takes a Qwen2-VL checkpoint,
or a text-only Qwen2 causal LM whose weights go into the Qwen2-VL text model (then no vision
tower is built unless `--vision-tower` is given). The projector is freshly initialised.
"""

import argparse
import shutil
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from train.graft import (
    REPO_ROOT,
    Qwen2AudioGraftConfig,
    Qwen2AudioGraftForConditionalGeneration,
    Qwen2AudioGraftProcessor,
    Qwen2AudioGraftProjector,
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>",
]  # fmt: skip
AUDIO_SPECIAL_TOKENS = ["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
EXTRA_AUTO_CLASSES = ("AutoModelForSpeechSeq2Seq", "AutoModelForCausalLM", "AutoModelForImageTextToText")
MODEL_CLASS_REF = "modeling_qwen2_audio_graft.Qwen2AudioGraftForConditionalGeneration"
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_qwen2_audio_graft.Qwen2AudioGraftASRPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "audio",
    }
}


def tiny_tokenizer() -> Qwen2Tokenizer:
    """A byte-level tokenizer with no merges (one token per byte) plus the special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.eos_token = "<|im_end|>"
    return tokenizer


def token_ids(tokenizer) -> dict:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("audio_bos_token_id", "<|audio_bos|>"), ("audio_token_id", "<|AUDIO|>"),
        ("audio_eos_token_id", "<|audio_eos|>"),
    )}  # fmt: skip
    missing = [name for name, value in ids.items() if value is None or value == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"The tokenizer lacks special tokens for {missing}")
    return ids


def tiny_config(tokenizer, audio_downsample=1, projector_type="linear") -> Qwen2AudioGraftConfig:
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
    )  # fmt: skip
    return Qwen2AudioGraftConfig(
        text_config=text, vision_config=vision, audio_config=audio, audio_downsample=audio_downsample,
        projector_type=projector_type, max_audio_seconds=120.0, **token_ids(tokenizer),
    )  # fmt: skip


def make_processor(tokenizer, config, image_processor=None) -> Qwen2AudioGraftProcessor:
    feature_extractor = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins)
    if image_processor is None:
        image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    return Qwen2AudioGraftProcessor(
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        image_processor=image_processor,
        audio_downsample=config.audio_downsample,
        max_audio_seconds=config.max_audio_seconds,
    )


def generation_config(tokenizer) -> GenerationConfig:
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    return GenerationConfig(do_sample=False, num_beams=1, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)


def save_graft(model, processor, output: Path, max_shard_size="2GB") -> None:
    """Save weights, config (with every auto class and the ASR pipeline), processor and code."""
    output.mkdir(parents=True, exist_ok=True)
    model.config.custom_pipelines = CUSTOM_PIPELINES
    model.save_pretrained(output, max_shard_size=max_shard_size)
    processor.save_pretrained(output)
    # save_pretrained writes AutoConfig and AutoModel; the other heads resolve to the same class.
    config = Qwen2AudioGraftConfig.from_pretrained(output)
    config.auto_map = {**config.auto_map, **{name: MODEL_CLASS_REF for name in EXTRA_AUTO_CLASSES}}
    config.architectures = [type(model).__name__]
    config.save_pretrained(output)
    for code in ("pipeline_qwen2_audio_graft.py",):  # imported by modeling; copied for clarity on old versions
        if not (output / code).exists():
            shutil.copy(REPO_ROOT / code, output / code)


def build_tiny(output: Path, audio_downsample=1, projector_type="linear", seed=0):
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, audio_downsample, projector_type)
    model = Qwen2AudioGraftForConditionalGeneration(config).eval()
    model.generation_config = generation_config(tokenizer)
    processor = make_processor(tokenizer, config)
    save_graft(model, processor, output)
    return model, processor

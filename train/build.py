"""Compose an audio graft and save it as a complete remote-code model folder.

    python -m train.build --tiny --output build/tiny-graft
    python -m train.build --llm Qwen/Qwen2-VL-7B-Instruct --encoder openai/whisper-large-v3-turbo \
        --output build/qwen2-vl-7b-audio [--audio-downsample 2 --projector-type mlp]

`--tiny` writes a few-MB random graft with an offline byte-level tokenizer that carries the
Qwen2-VL and audio special tokens: nothing is downloaded. `--llm` takes a Qwen2-VL checkpoint,
or a text-only Qwen2 causal LM whose weights go into the Qwen2-VL text model (then no vision
tower is built unless `--vision-tower` is given). The projector is freshly initialised, its outputs at
RMS `--projector-gain` (1.0; `embedding` for the text-embedding RMS). `<|audio_bos|>`, `<|AUDIO|>`
and `<|audio_eos|>` take embedding rows the LLM never trained: they start at the mean of its
trained input embeddings (`init_audio_marker_rows`).
"""

import argparse
import json
from pathlib import Path

import torch
from tokenizers import AddedToken, pre_tokenizers
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
# The projector's starting output RMS. Measured on the mini graft (docs/training.md, "Projector
# scale"): gain 1.0 listens sooner and transcribes better than the text-embedding RMS (0.0173 for
# Qwen2.5-0.5B) at the same steps and data.
DEFAULT_PROJECTOR_GAIN = 1.0
MODEL_CLASS_REF = "modeling_qwen2_audio_graft.Qwen2AudioGraftForConditionalGeneration"
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_qwen2_audio_graft.Qwen2AudioGraftASRPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "audio",
    }
}


def tiny_tokenizer(special_tokens=SPECIAL_TOKENS) -> Qwen2Tokenizer:
    """A byte-level tokenizer with no merges (one token per byte) plus the special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens[1:])})
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


def build_tiny(output: Path, audio_downsample=1, projector_type="linear", seed=0, encode_padding=True):
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, audio_downsample, projector_type, encode_padding)
    model = Qwen2AudioGraftForConditionalGeneration(config).eval()
    model.generation_config = generation_config(tokenizer)
    processor = make_processor(tokenizer, config)
    save_graft(model, processor, output)
    return model, processor


def release_config(audio_downsample=1, projector_type="linear") -> Qwen2AudioGraftConfig:
    """The release graft: Qwen2-VL-7B-Instruct's text and vision settings + whisper-large-v3-turbo's encoder."""
    text = dict(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
        use_sliding_window=False, sliding_window=32768, max_window_layers=28, bos_token_id=151643,
        eos_token_id=151645, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    )  # fmt: skip
    vision = dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4, num_heads=16,
                  in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)  # fmt: skip
    config = Qwen2AudioGraftConfig(
        text_config=text, vision_config=vision, audio_downsample=audio_downsample, projector_type=projector_type,
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        audio_bos_token_id=151657, audio_token_id=151658, audio_eos_token_id=151659, dtype=torch.bfloat16,
    )  # fmt: skip
    config.architectures = ["Qwen2AudioGraftForConditionalGeneration"]
    config.custom_pipelines = CUSTOM_PIPELINES
    config.auto_map = {
        "AutoConfig": "configuration_qwen2_audio_graft.Qwen2AudioGraftConfig",
        "AutoModel": MODEL_CLASS_REF, **{name: MODEL_CLASS_REF for name in EXTRA_AUTO_CLASSES},
    }  # fmt: skip
    return config


def write_release_config(output: Path, audio_downsample=1, projector_type="linear") -> None:
    """config.json, generation_config.json and the processor's config of the release graft."""
    config = release_config(audio_downsample, projector_type)
    config.to_json_file(output / "config.json")  # not save_pretrained: the code is already at the root
    GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[151645, 151643], pad_token_id=151643,
                     bos_token_id=151643).save_pretrained(output)  # fmt: skip
    processor_config = {
        "processor_class": "Qwen2AudioGraftProcessor",
        "auto_map": {"AutoProcessor": "processing_qwen2_audio_graft.Qwen2AudioGraftProcessor"},
        "audio_downsample": config.audio_downsample,
        "max_audio_seconds": config.max_audio_seconds,
        "feature_extractor": WhisperFeatureExtractor(feature_size=128).to_dict(),
        "image_processor": Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).to_dict(),
    }
    (output / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's split of the rotary half-dimension into time, height and width sections."""
    half = head_dim // 2
    time = half // 4
    return [time, (half - time) // 2, half - time - (half - time) // 2]


def text_config_from_qwen2(llm_config) -> dict:
    """A text-only Qwen2 config as a Qwen2-VL text config (same weights, M-RoPE sections added)."""
    head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // llm_config.num_attention_heads
    rope = dict(getattr(llm_config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 1000000.0})
    rope["mrope_section"] = mrope_section(head_dim)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "bos_token_id",
            "eos_token_id")  # fmt: skip
    return {**{key: getattr(llm_config, key) for key in keys}, "rope_parameters": rope}


def load_llm(llm: str, dtype):
    """(state dict in the graft's key layout, text config, vision config or None, tie_word_embeddings)."""
    llm_config = AutoConfig.from_pretrained(llm)
    if llm_config.model_type == "qwen2_vl":
        model = Qwen2VLForConditionalGeneration.from_pretrained(llm, dtype=dtype)
        state = model.state_dict()
        return state, model.config.text_config.to_dict(), model.config.vision_config.to_dict(), model.config.tie_word_embeddings
    if llm_config.model_type != "qwen2":
        raise ValueError(f"--llm must be a Qwen2-VL or Qwen2 checkpoint, got model_type {llm_config.model_type!r}")
    model = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype)
    # Qwen2ForCausalLM keeps its decoder under `model.`; the graft keeps it under `model.language_model.`
    state = {("lm_head.weight" if k == "lm_head.weight" else "model.language_model." + k[len("model.") :]): v
             for k, v in model.state_dict().items()}  # fmt: skip
    return state, text_config_from_qwen2(llm_config), None, bool(getattr(llm_config, "tie_word_embeddings", False))


def load_encoder(encoder: str, dtype):
    """(Whisper encoder weights in the graft's key layout, WhisperConfig, WhisperFeatureExtractor)."""
    whisper = WhisperModel.from_pretrained(encoder, dtype=dtype)
    state = {"model.audio_tower." + k: v for k, v in whisper.encoder.state_dict().items()}
    return state, whisper.config, WhisperFeatureExtractor.from_pretrained(encoder)


def add_audio_tokens(tokenizer, vocab_size: int) -> None:
    missing = [t for t in AUDIO_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(token, special=True) for token in missing], special_tokens=True)
    if len(tokenizer) > vocab_size:
        raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the embedding only {vocab_size} rows")


def compose(llm, encoder, output: Path, audio_downsample=1, projector_type="linear", max_audio_seconds=300.0,
            vision_tower=None, dtype=torch.bfloat16, seed=0, projector_norm=True, encode_padding=True,
            projector_gain=DEFAULT_PROJECTOR_GAIN):  # fmt: skip
    """Graft `encoder`'s Whisper encoder onto `llm` with a new projector and save everything.

    `projector_gain` is the RMS the projector's outputs start at (its RMSNorm's gain): a number,
    or None for the LLM's text-embedding RMS."""
    torch.manual_seed(seed)
    llm_state, text_config, vision_config, tied = load_llm(llm, dtype)
    audio_state, audio_config, feature_extractor = load_encoder(encoder, dtype)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    trained_rows = len(tokenizer)  # the LLM's own tokens: rows past them were never trained
    add_audio_tokens(tokenizer, text_config["vocab_size"])
    use_vision = vision_config is not None if vision_tower is None else vision_tower
    config = Qwen2AudioGraftConfig(
        text_config=text_config, vision_config=vision_config, audio_config=audio_config.to_dict(),
        audio_downsample=audio_downsample, projector_type=projector_type, max_audio_seconds=max_audio_seconds,
        use_vision_tower=use_vision, tie_word_embeddings=tied, dtype=dtype, projector_norm=projector_norm,
        encode_padding=encode_padding, **token_ids(tokenizer),
    )  # fmt: skip
    with torch.device("meta"):
        model = Qwen2AudioGraftForConditionalGeneration(config)
    state = {**llm_state, **audio_state}
    if not use_vision:
        state = {k: v for k, v in state.items() if not k.startswith("model.visual.")}
    result = model.load_state_dict(state, strict=False, assign=True)
    _init_left_out(model, result.missing_keys, dtype, projector_gain)
    if tied:
        model.tie_weights()
    init_audio_marker_rows(model, tokenizer, trained_rows)
    model.generation_config = generation_config(tokenizer)
    processor = make_processor(tokenizer, config)
    processor.feature_extractor = feature_extractor
    save_graft(model.eval(), processor, output)
    return model, processor


@torch.no_grad()
def init_audio_marker_rows(model, tokenizer, trained_rows: int) -> list[int]:
    """Give the new audio tokens that sit on never-trained embedding rows (ids at or past
    `trained_rows`: 151657-151659 in Qwen2-VL, 151665-151667 in Qwen2.5) the mean of the trained
    input embeddings, so `<|audio_bos|>` and `<|audio_eos|>` start as an average token rather than
    as whatever the padding rows hold. Returns the ids set."""
    embeddings = model.get_input_embeddings().weight
    mean = embeddings[:trained_rows].float().mean(0).to(embeddings.dtype)
    ids = [i for i in (tokenizer.convert_tokens_to_ids(t) for t in AUDIO_SPECIAL_TOKENS) if i >= trained_rows]
    for token_id in ids:
        embeddings[token_id] = mean
    return ids


def encoder_output_rms(audio_tower) -> float:
    """RMS of the Whisper encoder's outputs, from its final LayerNorm: unit-variance features
    scaled by gamma and shifted by beta have mean square mean(gamma**2) + mean(beta**2)."""
    norm = audio_tower.layer_norm
    return float((norm.weight.float().pow(2).mean() + norm.bias.float().pow(2).mean()).sqrt())


def embedding_rms(model) -> float:
    return float(model.get_input_embeddings().weight.float().pow(2).mean().sqrt())


def _init_left_out(model, missing_keys, dtype, projector_gain=DEFAULT_PROJECTOR_GAIN) -> None:
    """Fresh weights for what no checkpoint provides: the projector, and a vision tower asked for
    on a text-only LLM. Anything else missing is a mapping error."""
    fresh = ("model.audio_projector.", "model.visual.")
    unexpected = [k for k in missing_keys if not k.startswith(fresh) and k != "lm_head.weight"]
    if unexpected:
        raise ValueError(f"These weights were not found in the checkpoints: {unexpected[:10]}")
    projector = Qwen2AudioGraftProjector(model.config)
    gain = embedding_rms(model) if projector_gain is None else projector_gain
    projector.init_to_scale(encoder_output_rms(model.model.audio_tower), gain)
    model.model.audio_projector = projector.to(dtype)
    if any(k.startswith("model.visual.") for k in missing_keys):
        visual = type(model.model.visual)._from_config(model.config.vision_config)
        model.model.visual = visual.to(dtype)


def _gain(value: str) -> float | None:
    return None if value == "embedding" else float(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--tiny", action="store_true", help="a few-MB random graft, nothing downloaded")
    parser.add_argument("--release-config", action="store_true", help="only the release 7B graft's configs")
    parser.add_argument("--llm", help="Qwen2-VL or Qwen2 checkpoint (path or Hub id)")
    parser.add_argument("--encoder", help="Whisper checkpoint (path or Hub id)")
    parser.add_argument("--audio-downsample", type=int, default=1, choices=(1, 2, 4, 8))
    parser.add_argument("--projector-type", default="linear", choices=("linear", "mlp"))
    parser.add_argument("--projector-norm", action=argparse.BooleanOptionalAction, default=True,
                        help="end the projector with an RMSNorm at the text embeddings' scale (composed grafts)")
    parser.add_argument("--encode-padding", action=argparse.BooleanOptionalAction, default=True,
                        help="the encoder sees whole 30 s windows (default) or, with --no-encode-padding, real audio only")
    parser.add_argument("--projector-gain", type=_gain, default=DEFAULT_PROJECTOR_GAIN,
                        help="the projector's starting output RMS, or 'embedding' for the LLM's text-embedding RMS")
    parser.add_argument("--max-audio-seconds", type=float, default=300.0)
    parser.add_argument("--vision-tower", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = parser.parse_args(argv)
    if args.release_config:
        write_release_config(args.output, args.audio_downsample, args.projector_type)
    elif args.tiny:
        build_tiny(args.output, args.audio_downsample, args.projector_type, encode_padding=args.encode_padding)
    elif args.llm and args.encoder:
        compose(args.llm, args.encoder, args.output, args.audio_downsample, args.projector_type,
                args.max_audio_seconds, args.vision_tower, getattr(torch, args.dtype),
                projector_norm=args.projector_norm, encode_padding=args.encode_padding,
                projector_gain=args.projector_gain)  # fmt: skip
    else:
        parser.error("give --tiny, or both --llm and --encoder")
    print(f"Saved the graft to {args.output}")


if __name__ == "__main__":
    main()

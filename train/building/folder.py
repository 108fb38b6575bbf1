"""What every saved graft folder holds besides its weights: the special-token ids of its config,
its processor and generation config, and the auto classes and ASR pipeline `save_graft` writes."""

from pathlib import Path

from transformers import GenerationConfig, Qwen2VLImageProcessorPil, WhisperFeatureExtractor

from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
from qwen2_audio_graft.processing_qwen2_audio_graft import (
    AUDIO_BOS_TOKEN,
    AUDIO_EOS_TOKEN,
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    Qwen2AudioGraftProcessor,
)

AUDIO_SPECIAL_TOKENS = [AUDIO_BOS_TOKEN, AUDIO_TOKEN, AUDIO_EOS_TOKEN]
# Qwen2-VL's image processor limits: at least 4 patches of 28 px, at most 1280 (its published config)
MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 1280
EXTRA_AUTO_CLASSES = ("AutoModelForSpeechSeq2Seq", "AutoModelForCausalLM", "AutoModelForImageTextToText")
MODEL_CLASS_REF = "modeling_qwen2_audio_graft.Qwen2AudioGraftForConditionalGeneration"
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_qwen2_audio_graft.Qwen2AudioGraftASRPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "audio",
    }
}


def token_ids(tokenizer) -> dict:
    """The config's special-token ids (`image_token_id`, `audio_token_id`, ...) in `tokenizer`."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", IMAGE_TOKEN), ("video_token_id", VIDEO_TOKEN),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("audio_bos_token_id", AUDIO_BOS_TOKEN), ("audio_token_id", AUDIO_TOKEN),
        ("audio_eos_token_id", AUDIO_EOS_TOKEN),
    )}  # fmt: skip
    missing = [name for name, value in ids.items() if value is None or value == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"The tokenizer lacks special tokens for {missing}")
    return ids


def make_processor(tokenizer, config, image_processor=None, chat_template=None) -> Qwen2AudioGraftProcessor:
    feature_extractor = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins)
    if image_processor is None:
        image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return Qwen2AudioGraftProcessor(
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        image_processor=image_processor,
        audio_downsample=config.audio_downsample,
        max_audio_seconds=config.max_audio_seconds,
        chat_template=chat_template,
    )


def generation_config(tokenizer) -> GenerationConfig:
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    return make_generation_config(stops, tokenizer.pad_token_id)


def make_generation_config(eos_token_id: list[int], pad_token_id: int, **more) -> GenerationConfig:
    """Greedy decoding (a graft's folder may set beams: mini/trained/generation_config.json) up to either stop token."""
    return GenerationConfig(do_sample=False, num_beams=1, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **more)


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

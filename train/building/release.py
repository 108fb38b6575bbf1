"""The release graft's configs (Qwen2-VL-7B-Instruct + whisper-large-v3-turbo), written without its weights.

    python -m train.build --release_config --output .

The repository root's config.json is `release_config()` (tests/test_release_config.py keeps the two in step).
"""

import json
from pathlib import Path

import torch
from transformers import Qwen2VLImageProcessorPil, WhisperFeatureExtractor

from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig

from .folder import CUSTOM_PIPELINES, EXTRA_AUTO_CLASSES, MAX_PIXELS, MIN_PIXELS, MODEL_CLASS_REF, make_generation_config


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
    make_generation_config([151645, 151643], 151643, bos_token_id=151643).save_pretrained(output)
    processor_config = {
        "processor_class": "Qwen2AudioGraftProcessor",
        "auto_map": {"AutoProcessor": "processing_qwen2_audio_graft.Qwen2AudioGraftProcessor"},
        "audio_downsample": config.audio_downsample,
        "max_audio_seconds": config.max_audio_seconds,
        "feature_extractor": WhisperFeatureExtractor(feature_size=128).to_dict(),
        "image_processor": Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).to_dict(),
    }
    (output / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")

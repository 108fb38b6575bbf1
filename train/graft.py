"""The package's own classes, re-exported for training and the tests.

The remote-code files stay at the repository root, where a Hub model folder keeps them, and import
each other relatively (`from .configuration_x import Y`), as the Hub requires. Installed (`pip
install -e .`, which `make install` runs), they are the package `qwen2_audio_graft`: pyproject.toml
maps that package to the root.
"""

from pathlib import Path

from qwen2_audio_graft.configuration_qwen2_audio_graft import (
    SAMPLING_RATE,
    WINDOW_SAMPLES,
    Qwen2AudioGraftConfig,
    encoder_frames,
    num_audio_tokens,
)
from qwen2_audio_graft.modeling_qwen2_audio_graft import (
    Qwen2AudioGraftForConditionalGeneration,
    Qwen2AudioGraftModel,
    Qwen2AudioGraftProjector,
    encode_real_frames,
)
from qwen2_audio_graft.pipeline_qwen2_audio_graft import (
    DEFAULT_INSTRUCTION,
    Qwen2AudioGraftASRPipeline,
    build_prompt,
    decoding_beams,
    load_audio,
    read_audio_file,
    split_at_pauses,
)
from qwen2_audio_graft.processing_qwen2_audio_graft import (
    AUDIO_BOS_TOKEN,
    AUDIO_EOS_TOKEN,
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    Qwen2AudioGraftProcessor,
    resample_to_16k,
    to_float_mono,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "AUDIO_BOS_TOKEN",
    "AUDIO_EOS_TOKEN",
    "AUDIO_TOKEN",
    "IMAGE_TOKEN",
    "VIDEO_TOKEN",
    "DEFAULT_INSTRUCTION",
    "REPO_ROOT",
    "SAMPLING_RATE",
    "WINDOW_SAMPLES",
    "Qwen2AudioGraftASRPipeline",
    "Qwen2AudioGraftConfig",
    "Qwen2AudioGraftForConditionalGeneration",
    "Qwen2AudioGraftModel",
    "Qwen2AudioGraftProcessor",
    "Qwen2AudioGraftProjector",
    "build_prompt",
    "decoding_beams",
    "load_audio",
    "read_audio_file",
    "split_at_pauses",
    "encode_real_frames",
    "encoder_frames",
    "num_audio_tokens",
    "resample_to_16k",
    "to_float_mono",
]

"""The package's own classes, imported from the repository root.

The remote-code files at the root import each other relatively (`from .configuration_x import
Y`), as a Hub repo folder requires, so they only import as members of a package. This registers
the root as the package `qwen2_audio_graft` and re-exports what training and tests use.
"""

import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

if "qwen2_audio_graft" not in sys.modules:
    _package = types.ModuleType("qwen2_audio_graft")
    _package.__path__ = [str(REPO_ROOT)]
    sys.modules["qwen2_audio_graft"] = _package

from qwen2_audio_graft.configuration_qwen2_audio_graft import (  # noqa: E402
    SAMPLING_RATE,
    WINDOW_SAMPLES,
    Qwen2AudioGraftConfig,
    num_audio_tokens,
)
from qwen2_audio_graft.modeling_qwen2_audio_graft import (  # noqa: E402
    Qwen2AudioGraftForConditionalGeneration,
    Qwen2AudioGraftModel,
    Qwen2AudioGraftProjector,
    encode_real_frames,
)
from qwen2_audio_graft.pipeline_qwen2_audio_graft import (  # noqa: E402
    DEFAULT_INSTRUCTION,
    Qwen2AudioGraftASRPipeline,
    build_prompt,
    split_at_pauses,
)
from qwen2_audio_graft.processing_qwen2_audio_graft import (  # noqa: E402
    Qwen2AudioGraftProcessor,
    resample_to_16k,
    to_float_mono,
)

__all__ = [
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
    "split_at_pauses",
    "encode_real_frames",
    "num_audio_tokens",
    "resample_to_16k",
    "to_float_mono",
]

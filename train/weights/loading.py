"""Load a graft folder with the pieces the stages trained: a projector, a LoRA adapter."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration
from qwen2_audio_graft.processing_qwen2_audio_graft import Qwen2AudioGraftProcessor

PROJECTOR_FILE = "model.safetensors"  # stage 1 writes `model.audio_projector.*` into it (and `ctc_head.*` under CTC)
PROJECTOR_PREFIX = "model.audio_projector."
CTC_HEAD_PREFIX = "ctc_head."  # stage 1's CTC head (train.stages.ctc): not part of the graft


def load_projector(model, folder) -> None:
    """Copy stage 1's projector weights into `model`; anything else in the file but a CTC head is an error."""
    state = load_file(str(Path(folder) / PROJECTOR_FILE))
    state = {k: v for k, v in state.items() if not k.startswith(CTC_HEAD_PREFIX)}
    foreign = [k for k in state if not k.startswith(PROJECTOR_PREFIX)]
    if foreign or not state:
        raise ValueError(f"{folder} must hold only {PROJECTOR_PREFIX}* weights, found {foreign[:5] or 'none'}")
    projector = {k[len(PROJECTOR_PREFIX) :]: v for k, v in state.items()}
    model.model.audio_projector.load_state_dict(projector, strict=True)


def add_graft_arguments(parser) -> None:
    """`--model`, `--projector` and `--adapter`: what `load_graft` loads, for the commands that run a graft."""
    parser.add_argument("--model", required=True, help="graft folder (full precision)")
    parser.add_argument("--projector", help="stage 1 output folder to load the projector from")
    parser.add_argument("--adapter", help="stage 2 output folder (LoRA adapter + projector)")


def load_graft(model_path, projector=None, adapter=None, dtype=torch.float32, **kwargs):
    """(model, processor): the graft at `model_path`, with stage 1's projector and/or stage 2's
    adapter applied (the adapter stays unmerged: `train.merge` is the step that merges)."""
    if kwargs.get("quantization_config") is not None:
        from .quantize import load_4bit

        model = load_4bit(model_path, dtype=dtype, **kwargs)
    else:
        model = Qwen2AudioGraftForConditionalGeneration.from_pretrained(model_path, dtype=dtype, **kwargs)
    # The folder's auto_map makes AutoTokenizer ask before running its code; the code is ours.
    processor = Qwen2AudioGraftProcessor.from_pretrained(model_path, trust_remote_code=True)
    if projector is not None:
        load_projector(model, projector)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), processor

"""Stage 1: align the projector. Only `audio_projector` trains; the Whisper encoder, the LLM and
the vision tower stay frozen. Saves only the projector (`model.safetensors`, `model.audio_projector.*`).

    python -m train.stage1_align --config train/configs/stage1_7b.yaml
    python -m train.stage1_align --config train/configs/mini_stage1.yaml --max_steps 50 --resume true
    accelerate launch --num_processes 4 -m train.stage1_align --config train/configs/stage1_7b.yaml

Any key of the YAML can be overridden on the command line (`--learning_rate 1e-4`); `--resume true`
continues from the last checkpoint in `output_dir` with the same step count. `precision: auto`
keeps the frozen weights in bf16 under bf16 autocast where the hardware has bf16 (float32
elsewhere); the projector always trains in float32 (`train.weights.precision`).
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments, set_seed

from .stages.args import DataArguments, RecipeArguments, parse_config
from .weights.loading import PROJECTOR_PREFIX, load_graft
from .weights.precision import apply_precision, keep_trainable_float32
from .stages.common import run_stage


@dataclass
class Stage1Arguments:
    model_path: str = field(metadata={"help": "graft folder written by train.build"})


def freeze_all_but_projector(model) -> list[str]:
    """Only the projector trains; returns the names of the trainable parameters."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(PROJECTOR_PREFIX)
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def main(argv=None):
    stage, recipe, data_args, training_args = parse_config(
        (Stage1Arguments, RecipeArguments, DataArguments, TrainingArguments), argv
    )
    set_seed(training_args.seed)  # before any random initialization (LoRA's A matrices): a run is its seed's
    dtype = apply_precision(training_args, recipe.precision)
    model, processor = load_graft(stage.model_path, dtype=dtype)
    trainable = freeze_all_but_projector(model)
    keep_trainable_float32(model)
    n_trainable = sum(model.get_parameter(name).numel() for name in trainable)
    print(f"stage 1: training {n_trainable:,} projector parameters of {model.num_parameters():,}, "
          f"world size {training_args.world_size}, frozen weights in {dtype}, bf16 autocast {training_args.bf16}")  # fmt: skip
    return run_stage(model, processor, data_args, training_args, recipe, "stage 1: projector alignment")


if __name__ == "__main__":
    main()

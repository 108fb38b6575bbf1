"""Stage 1: align the projector. Only `audio_projector` trains; the Whisper encoder, the LLM and
the vision tower stay frozen. Saves only the projector (`model.safetensors`, `model.audio_projector.*`).

    python -m train.stage1_align --config train/configs/stage1_7b.yaml
    python -m train.stage1_align --config train/configs/mini_stage1.yaml --max_steps 50 --resume
    accelerate launch --num_processes 4 -m train.stage1_align --config train/configs/stage1_7b.yaml

Any key of the YAML can be overridden on the command line (`--learning_rate 1e-4`); `--resume`
continues from the last checkpoint in `output_dir` with the same step count.
"""

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from train.args import DataArguments, parse_config
from train.loading import PROJECTOR_PREFIX, load_graft
from train.stages import run_stage


@dataclass
class Stage1Arguments:
    model_path: str = field(metadata={"help": "graft folder written by train.build"})
    dtype: str = field(default="float32", metadata={"help": "weights dtype: float32 or bfloat16"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})


def freeze_all_but_projector(model) -> list[str]:
    """Only the projector trains; returns the names of the trainable parameters."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(PROJECTOR_PREFIX)
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def main(argv=None):
    stage, data_args, training_args = parse_config((Stage1Arguments, DataArguments, TrainingArguments), argv)
    model, processor = load_graft(stage.model_path, dtype=getattr(torch, stage.dtype))
    trainable = freeze_all_but_projector(model)
    n_trainable = sum(model.get_parameter(name).numel() for name in trainable)
    print(f"stage 1: training {n_trainable:,} projector parameters of {model.num_parameters():,}, "
          f"world size {training_args.world_size}")  # fmt: skip
    return run_stage(model, processor, data_args, training_args, stage.resume, "stage 1: projector alignment")


if __name__ == "__main__":
    main()

"""Dataclass arguments from a YAML `--config` file, overridden by command-line flags."""

import sys
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser

from train.graft import DEFAULT_INSTRUCTION


@dataclass
class DataArguments:
    train_data: str = field(metadata={"help": "JSONL/CSV manifest, audiofolder directory or datasets name"})
    train_split: str = "train"
    eval_data: str | None = None
    eval_split: str = "test"
    dataset_config: str | None = None
    audio_column: str = "audio"
    text_column: str = "text"
    streaming: bool = field(default=False, metadata={"help": "stream train_data (set max_steps)"})
    max_train_samples: int | None = None
    max_eval_samples: int | None = 64
    instruction: str = DEFAULT_INSTRUCTION
    eval_wer: bool = field(default=True, metadata={"help": "transcribe the eval set at each evaluation"})
    eval_max_new_tokens: int = 128
    listening_samples: int | None = field(
        default=24,
        metadata={"help": "eval clips scored with their own, zeroed and shuffled audio at each evaluation (0: none)"},
    )
    encoder_cache_dir: str | None = field(
        default=None,
        metadata={"help": "encode the training set with the frozen encoder once and keep the outputs here"},
    )


@dataclass
class RecipeArguments:
    """What both stages share beyond Trainer's own arguments."""

    precision: str = field(
        default="auto",
        metadata={"help": "auto | bfloat16 | float32: frozen weights and autocast in bf16 where the hardware has it "
                  "(train.precision); trained weights always float32"},
    )  # fmt: skip
    projector_learning_rate: float | None = field(
        default=None, metadata={"help": "the projector's own learning rate (default: learning_rate)"}
    )
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})


def _as_flags(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        flags += [f"--{key}", *(str(v) for v in values)]
    return flags


def parse_config(dataclass_types, argv=None):
    """`--config FILE` supplies defaults as flags; flags given after it on the command line win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = []
    if "--config" in argv:
        at = argv.index("--config")
        with open(argv[at + 1]) as handle:
            flags = _as_flags(yaml.safe_load(handle) or {})
        argv = argv[:at] + argv[at + 2 :]
    return HfArgumentParser(dataclass_types).parse_args_into_dataclasses(args=flags + argv)

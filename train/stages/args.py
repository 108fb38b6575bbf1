"""Dataclass arguments from a YAML `--config` file, overridden by command-line flags."""

from dataclasses import dataclass, field

from trl import TrlParser

from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION


@dataclass
class DataArguments:
    train_data: str = field(metadata={"help": "JSONL/CSV manifest (several joined by commas), audiofolder directory or datasets name"})
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
    join_clips: float = field(
        default=0.0,
        metadata={"help": "probability that a training item is its clip joined with others (train.stages.data.JoinedClips)"},
    )
    join_max_clips: int = field(default=3, metadata={"help": "most clips in one joined training item"})
    join_max_seconds: float = field(default=30.0, metadata={"help": "longest joined training item, in seconds"})
    ctc_vocabulary_rows: int = field(
        default=20000,
        metadata={"help": "CTC (stage 1's ctc objective, stage 2's ctc_weight) on streamed train_data: the rows "
                  "whose transcripts give the head's vocabulary (a map-style set gives all of its rows)"},
    )  # fmt: skip
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
                  "(train.weights.precision); trained weights always float32"},
    )  # fmt: skip
    projector_learning_rate: float | None = field(
        default=None, metadata={"help": "the projector's own learning rate (default: learning_rate)"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from the last checkpoint in output_dir (from step 0 when it has none)"}
    )
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "keep an exponential moving average of the trained weights with this decay and save it "
                  "to <output_dir>/ema (train.stages.ema; 0: none)"},
    )  # fmt: skip


def parse_config(dataclass_types, argv=None):
    """`--config FILE` supplies the defaults; flags on the command line win wherever they stand
    (TRL's `TrlParser`). A key no dataclass has is refused."""
    return TrlParser(dataclass_types).parse_args_and_config(argv)

"""Stage 1: align the projector. Only `audio_projector` trains; the Whisper encoder, the LLM and
the vision tower stay frozen. Saves only the projector (`model.safetensors`, `model.audio_projector.*`;
under CTC the head's `ctc_head.*` beside it).

    python -m train.stage1_align --config train/configs/stage1_7b.yaml
    python -m train.stage1_align --config train/configs/mini_stage1.yaml --max_steps 50 --resume true
    accelerate launch --num_processes 4 -m train.stage1_align --config train/configs/stage1_7b.yaml

Any key of the YAML can be overridden on the command line (`--learning_rate 1e-4`); `--resume true`
continues from the last checkpoint in `output_dir` with the same step count. `precision: auto`
keeps the frozen weights in bf16 under bf16 autocast where the hardware has bf16 (float32
elsewhere); the projector always trains in float32 (`train.weights.precision`).

`alignment_objective` chooses what the projector learns from: `lm` (the default), the LLM's loss
on the transcript, through the LLM's forward and backward pass; `ctc`, CTC against the LLM's
frozen input embeddings with no LLM pass (`train.stages.ctc`), which with `encoder_cache_dir`
costs little more than the projector itself and logs the greedy CTC WER at each evaluation.
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments, set_seed

from .stages.args import DataArguments, RecipeArguments, parse_config
from .weights.loading import PROJECTOR_PREFIX, load_graft
from .weights.precision import apply_precision, keep_trainable_float32
from .stages.common import run_stage
from .stages.ctc import CTCEvaluationCallback, ctc_alignment


@dataclass
class Stage1Arguments:
    model_path: str = field(metadata={"help": "graft folder written by train.build"})
    alignment_objective: str = field(
        default="lm",
        metadata={"help": "lm: the LLM's loss on the transcript; ctc: CTC against the LLM's frozen input "
                  "embeddings, no LLM pass (train.stages.ctc)"},
    )  # fmt: skip


OBJECTIVES = ("lm", "ctc")


def ctc_objective(processor, data_args, training_args):
    """run_stage's `objective` for `alignment_objective: ctc`: the graft inside a CTC head, and the greedy
    CTC WER of the eval set at each evaluation (the head's own weights are created in float32)."""

    def objective(model, train_set, eval_set, collator):
        aligned = ctc_alignment(model, processor, train_set, data_args.ctc_vocabulary_rows)
        callbacks = [] if eval_set is None else [
            CTCEvaluationCallback(collator, eval_set, training_args.per_device_eval_batch_size)]  # fmt: skip
        return aligned, callbacks

    return objective


def freeze_all_but_projector(model) -> list[str]:
    """Only the projector trains; returns the names of the trainable parameters."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(PROJECTOR_PREFIX)
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def main(argv=None):
    stage, recipe, data_args, training_args = parse_config(
        (Stage1Arguments, RecipeArguments, DataArguments, TrainingArguments), argv
    )
    if stage.alignment_objective not in OBJECTIVES:
        raise ValueError(f"alignment_objective must be one of {OBJECTIVES}, got {stage.alignment_objective!r}")
    set_seed(training_args.seed)  # before any random initialization (LoRA's A matrices): a run is its seed's
    dtype = apply_precision(training_args, recipe.precision)
    model, processor = load_graft(stage.model_path, dtype=dtype)
    trainable = freeze_all_but_projector(model)
    keep_trainable_float32(model)
    n_trainable = sum(model.get_parameter(name).numel() for name in trainable)
    print(f"stage 1: training {n_trainable:,} projector parameters of {model.num_parameters():,} "
          f"({stage.alignment_objective} objective), world size {training_args.world_size}, frozen weights in "
          f"{dtype}, bf16 autocast {training_args.bf16}")  # fmt: skip
    objective = None
    if stage.alignment_objective == "ctc":
        # The eval WER by generation and the listening check run the LLM on the projector's tokens;
        # under CTC the greedy CTC WER measures the audio tokens instead.
        data_args.eval_wer, data_args.listening_samples = False, 0
        training_args.activation_checkpointing = training_args.gradient_checkpointing = False  # no LLM layer runs
        objective = ctc_objective(processor, data_args, training_args)
    return run_stage(model, processor, data_args, training_args, recipe, "stage 1: projector alignment", objective)


if __name__ == "__main__":
    main()

"""Stage 2: LoRA on the LLM's attention and MLP projections, the projector trained with it.

By default the LLM is in 4-bit NF4 (QLoRA, rank 64, alpha 16), as the 7B recipe runs on one GPU.
The projector either continues from stage 1 (`projector_path`) or starts fresh with LoRA
(`projector_path` unset: joint training, the mini graft's recipe); `projector_learning_rate`
gives it its own learning rate. `train_audio_markers` also trains the `<|audio_bos|>` and
`<|audio_eos|>` embedding rows (which `train.build` starts at the mean embedding). `ctc_weight` adds
an auxiliary CTC loss of the audio tokens against the LLM's frozen input embeddings (`train.stages.ctc`).
The Whisper encoder, the vision tower and lm_head stay frozen and out of quantization; LoRA targets
only the LLM through a regex. Saves only what trained: the
adapter with the projector (`adapter_model.safetensors`, PEFT's `modules_to_save`).

    python -m train.stage2_qlora --config train/configs/stage2_7b.yaml
    python -m train.stage2_qlora --config train/configs/mini_stage2.yaml --resume true
    accelerate launch --num_processes 4 -m train.stage2_qlora --config train/configs/stage2_7b.yaml
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments, set_seed

from .stages.args import DataArguments, RecipeArguments, parse_config
from .weights.loading import load_graft
from .weights.precision import apply_precision, keep_trainable_float32
from .weights.quantize import nf4_config
from .stages.common import run_stage
from .stages.ctc import AuxiliaryCTCCallback, auxiliary_ctc

LLM_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class Stage2Arguments:
    model_path: str = field(metadata={"help": "graft folder written by train.build"})
    projector_path: str | None = field(default=None, metadata={"help": "stage 1 output folder (unset: fresh projector)"})
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = LLM_TARGETS
    load_in_4bit: bool = True
    train_audio_markers: bool = field(
        default=False,
        metadata={"help": "also train the <|audio_bos|> and <|audio_eos|> embedding rows (PEFT trainable_token_indices)"},
    )
    ctc_weight: float = field(
        default=0.0,
        metadata={"help": "add this times a CTC loss of the audio tokens against the LLM's frozen input embeddings "
                  "to the training loss (train.stages.ctc.AuxiliaryCTC; 0: none)"},
    )  # fmt: skip
    init_adapter: str | None = field(
        default=None,
        metadata={"help": "start LoRA and the projector from a saved stage-2 adapter folder (its own LoRA settings) "
                  "instead of fresh LoRA and projector_path"},
    )  # fmt: skip


def add_lora(model, stage):
    from peft import LoraConfig, PeftModel, get_peft_model

    for parameter in model.parameters():
        parameter.requires_grad = False
    if stage.init_adapter:
        model = PeftModel.from_pretrained(model, stage.init_adapter, is_trainable=True)
    else:
        markers = None
        if stage.train_audio_markers:
            markers = {"embed_tokens": [model.config.audio_bos_token_id, model.config.audio_eos_token_id]}
        config = LoraConfig(r=stage.lora_r, lora_alpha=stage.lora_alpha, lora_dropout=stage.lora_dropout,
                            target_modules=stage.lora_target_modules, modules_to_save=["audio_projector"],
                            trainable_token_indices=markers)  # fmt: skip
        model = get_peft_model(model, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n in trainable
             if ".lora_" not in n and ".audio_projector.modules_to_save." not in n and ".token_adapter." not in n]
    assert not stray, f"only LoRA and the projector may train, found {stray[:5]}"
    return model


def start_of(stage) -> str:
    """Where stage 2's trainable pieces start, in words."""
    if stage.init_adapter:
        return f"LoRA and projector from {stage.init_adapter}"
    if stage.projector_path:
        return f"fresh LoRA, projector from {stage.projector_path}"
    return "fresh LoRA and projector (joint training)"


def auxiliary_ctc_objective(processor, data_args, weight: float):
    """run_stage's `objective` for `ctc_weight` > 0: the same model, with the auxiliary CTC loss attached."""

    def objective(model, train_set, eval_set, collator):
        auxiliary = auxiliary_ctc(model, processor, train_set, weight, data_args.ctc_vocabulary_rows)
        return model, [AuxiliaryCTCCallback(auxiliary)]

    return objective


def main(argv=None):
    stage, recipe, data_args, training_args = parse_config(
        (Stage2Arguments, RecipeArguments, DataArguments, TrainingArguments), argv
    )
    set_seed(training_args.seed)  # before any random initialization (LoRA's A matrices): a run is its seed's
    dtype = apply_precision(training_args, recipe.precision)
    quantization = nf4_config(dtype) if stage.load_in_4bit else None
    model, processor = load_graft(stage.model_path, stage.projector_path, dtype=dtype, quantization_config=quantization)
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()
    model = add_lora(model, stage)
    keep_trainable_float32(model)
    model.print_trainable_parameters()
    print(f"stage 2: LLM {'NF4' if stage.load_in_4bit else dtype}, {start_of(stage)}, "
          f"bf16 autocast {training_args.bf16}")
    objective = None
    if stage.ctc_weight:
        objective = auxiliary_ctc_objective(processor, data_args, stage.ctc_weight)
    return run_stage(model, processor, data_args, training_args, recipe, "stage 2: LoRA + projector", objective)


if __name__ == "__main__":
    main()

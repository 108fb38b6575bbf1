"""Stage 2: 4-bit QLoRA (NF4) on the LLM's attention and MLP projections, projector still trained.

The Whisper encoder, the projector, the vision tower and lm_head stay out of quantization; LoRA
(rank 64, alpha 16 by default) targets only the LLM through a regex. Saves only what trained:
the adapter with the projector (`adapter_model.safetensors`, PEFT's `modules_to_save`).

    python -m train.stage2_qlora --config train/configs/stage2_7b.yaml
    python -m train.stage2_qlora --config train/configs/mini_stage2.yaml --resume
    accelerate launch --num_processes 4 -m train.stage2_qlora --config train/configs/stage2_7b.yaml
"""

from dataclasses import dataclass, field

import torch
from transformers import BitsAndBytesConfig, TrainingArguments

from train.args import DataArguments, parse_config
from train.loading import load_graft
from train.stages import run_stage

LLM_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
NOT_QUANTIZED = ["model.audio_tower", "model.audio_projector", "model.visual", "lm_head"]


@dataclass
class Stage2Arguments:
    model_path: str = field(metadata={"help": "graft folder written by train.build"})
    projector_path: str | None = field(default=None, metadata={"help": "stage 1 output folder"})
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = LLM_TARGETS
    load_in_4bit: bool = True
    compute_dtype: str = "bfloat16"
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})
    init_adapter: str | None = field(
        default=None,
        metadata={"help": "start LoRA and the projector from a saved stage-2 adapter folder (its own LoRA settings) "
                  "instead of fresh LoRA and projector_path"},
    )  # fmt: skip


def quantization(stage) -> BitsAndBytesConfig | None:
    if not stage.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, stage.compute_dtype), llm_int8_skip_modules=NOT_QUANTIZED,
    )  # fmt: skip


def keep_cpu_4bit_trainable(model) -> None:
    # On CPUs with AVX512-BF16 an eval forward repacks 4-bit weights in place and a later backward
    # then fails ("a view of a leaf Variable ... in-place"): keep the portable kernel.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def add_lora(model, stage):
    from peft import LoraConfig, PeftModel, get_peft_model

    for parameter in model.parameters():
        parameter.requires_grad = False
    if getattr(stage, "init_adapter", None):
        model = PeftModel.from_pretrained(model, stage.init_adapter, is_trainable=True)
    else:
        config = LoraConfig(r=stage.lora_r, lora_alpha=stage.lora_alpha, lora_dropout=stage.lora_dropout,
                            target_modules=stage.lora_target_modules, modules_to_save=["audio_projector"])  # fmt: skip
        model = get_peft_model(model, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n in trainable if ".lora_" not in n and ".audio_projector.modules_to_save." not in n]
    assert not stray, f"only LoRA and the projector may train, found {stray[:5]}"
    return model


def main(argv=None):
    stage, data_args, training_args = parse_config((Stage2Arguments, DataArguments, TrainingArguments), argv)
    dtype = getattr(torch, stage.compute_dtype)
    model, processor = load_graft(stage.model_path, stage.projector_path, dtype=dtype,
                                  quantization_config=quantization(stage))  # fmt: skip
    keep_cpu_4bit_trainable(model)
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()
    model = add_lora(model, stage)
    model.print_trainable_parameters()
    return run_stage(model, processor, data_args, training_args, stage.resume, "stage 2: QLoRA")


if __name__ == "__main__":
    main()

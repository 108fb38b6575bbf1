"""4-bit (NF4) loading of the graft for QLoRA, in one place for training and the benchmarks.

The Whisper encoder, the projector, the vision tower and lm_head stay out of quantization
(`NOT_QUANTIZED`: bitsandbytes needs full module-path prefixes; a bare name matches nothing).

On CPUs with AVX512-BF16, bitsandbytes 0.50's 4-bit layers repack their weights in place during
an eval forward, and a later backward then fails ("a view of a leaf Variable that requires grad
is being used in an in-place operation"). `load_4bit` switches that kernel off on every
`Linear4bit` before the model's first forward, so a model loaded through it trains after it has
generated, on CPUs with and without AVX512-BF16.
"""

import torch
from transformers import BitsAndBytesConfig

from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

NOT_QUANTIZED = ["model.audio_tower", "model.audio_projector", "model.visual", "lm_head"]


def nf4_config(compute_dtype: torch.dtype, skip=tuple(NOT_QUANTIZED)) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=list(skip),
    )  # fmt: skip


def keep_cpu_4bit_trainable(model) -> int:
    """Turn off bitsandbytes' in-place AVX512-BF16 repacking on every 4-bit layer; returns how many."""
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def load_4bit(folder, quantization_config: BitsAndBytesConfig, **kwargs):
    """The graft at `folder` with its LLM in 4-bit, ready to train (see the module docstring)."""
    model = Qwen2AudioGraftForConditionalGeneration.from_pretrained(
        folder, quantization_config=quantization_config, **kwargs
    )
    keep_cpu_4bit_trainable(model)
    return model

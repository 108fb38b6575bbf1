"""Which precision a stage trains in, and keeping the trained weights in float32.

The recipe: frozen weights (encoder, LLM) in bfloat16 wherever the hardware computes in bfloat16,
trainable weights (projector, LoRA) in float32, the forward and backward under bf16 autocast
(Trainer's `bf16=True`). AdamW then updates float32 master weights: updates of a few 1e-4 relative
are below bfloat16's resolution (2**-8) and would be rounded away on bfloat16 weights.

`precision: auto` picks bf16 on CUDA devices that support it and on CPUs with AVX512-BF16 or AMX
(`grep -o 'avx512_bf16\\|amx_bf16' /proc/cpuinfo`), float32 elsewhere: on a CPU without bf16 units,
bf16 matrix products are emulated and a training step is several times slower than in float32.

    python -c "from train.weights.precision import cpu_has_bf16; print(cpu_has_bf16())"
"""

from pathlib import Path

import torch

PRECISIONS = ("auto", "bfloat16", "float32")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what a CPU step's time depends on most


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        return set(cpuinfo.read_text().split())
    except OSError:
        return set()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX-BF16)."""
    return any(flag in cpu_flags(cpuinfo) for flag in CPU_BF16_FLAGS)


def hardware() -> dict:
    """The CPU (model name, cores, native bf16, the vector and matrix flags of `CPU_SPEED_FLAGS` it has), GPU if
    any, and the torch and transformers versions."""
    import os
    import platform

    import transformers

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    flags = cpu_flags()
    found = {"cpu": cpu, "cores": os.cpu_count(), "cpu_bf16": cpu_has_bf16(),
             "cpu_flags": [flag for flag in CPU_SPEED_FLAGS if flag in flags], "torch": torch.__version__,
             "transformers": transformers.__version__}  # fmt: skip
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
    return found


def resolve_precision(precision: str, use_cpu: bool = False) -> torch.dtype:
    """The dtype of the frozen weights and of autocast: bfloat16 or float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return getattr(torch, precision)
    if torch.cuda.is_available() and not use_cpu:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def apply_precision(training_args, precision: str) -> torch.dtype:
    """Resolve `precision` and switch Trainer's bf16 autocast on or off to match it."""
    dtype = resolve_precision(precision, use_cpu=training_args.use_cpu)
    training_args.bf16, training_args.fp16 = dtype == torch.bfloat16, False
    # TrainingArguments derives the accelerator's mixed precision from bf16/fp16 when it is built.
    training_args.mixed_precision = "bf16" if training_args.bf16 else "no"
    return dtype


def keep_trainable_float32(model) -> list[str]:
    """Cast every trainable parameter to float32 (the frozen ones keep their dtype); returns their names."""
    names = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
            names.append(name)
    return names

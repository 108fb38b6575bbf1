"""An exponential moving average (EMA) of the trained weights, kept inside the run.

`EMACallback` keeps, beside the weights the optimizer updates, their average with decay `decay`:
after each optimizer step, `ema = decay * ema + (1 - decay) * weight` for every trainable
parameter (LoRA and the projector: a few million numbers, in float32). The average smooths the
last few hundred steps' noise, as averaging checkpoints does, without a second run. It is saved
into every checkpoint (`ema.safetensors`) so that `--resume true` continues it, and at the end of
training as a complete adapter folder, `<output_dir>/ema`, loadable like the run's own. Whether the
average or the run's end is kept is decided on the validation split (`mini.demo keep`).
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

EMA_FILE = "ema.safetensors"
EMA_FOLDER = "ema"


class EMACallback(TrainerCallback):
    """Keeps the EMA of the model's trainable parameters; saves it with each checkpoint and at the end."""

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be between 0 and 1 (0 turns the average off), got {decay}")
        self.decay = decay
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().float().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):
        # Early on the average would be dominated by the random start, so the effective decay grows
        # with the step (the num_updates rule of TensorFlow's ExponentialMovingAverage).
        decay = min(self.decay, (1 + state.global_step) / (10 + state.global_step))
        for name, parameter in self.params.items():
            self.average[name].lerp_(parameter.detach().float(), 1 - decay)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in self.average.items()}, str(folder / EMA_FILE))

    def resume_from(self, checkpoint: str | None) -> bool:
        """Load the average saved in `checkpoint`; False (and the average restarts from the current
        weights) when the checkpoint holds none."""
        path = Path(checkpoint) / EMA_FILE if checkpoint else None
        if path is None or not path.exists():
            return False
        saved = load_file(str(path))
        if set(saved) != set(self.average):
            raise ValueError(f"{path} holds other parameters than the model trains: "
                             f"{sorted(set(saved) ^ set(self.average))[:5]}")
        self.average = {name: tensor.float() for name, tensor in saved.items()}
        return True

    @torch.no_grad()
    def save_average(self, model, output_dir: str) -> Path:
        """Write the average as an adapter folder `output_dir/ema` (the model's own weights are
        swapped in for the save and put back)."""
        folder = Path(output_dir) / EMA_FOLDER
        if not hasattr(model, "peft_config"):  # stage 1: the projector's weights alone, as the stage saves them
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in self.average.items()}, str(folder / "model.safetensors"),
                      metadata={"format": "pt"})
            return folder
        current = {name: p.detach().clone() for name, p in self.params.items()}
        for name, parameter in self.params.items():
            parameter.copy_(self.average[name].to(parameter.dtype))
        try:
            model.save_pretrained(str(folder))
        finally:
            for name, parameter in self.params.items():
                parameter.copy_(current[name])
        return folder

"""An exponential moving average (EMA) of the trained weights, kept inside the run.

`EMACallback` keeps, beside the weights the optimizer updates, their average with decay `decay`:
after each optimizer step, `ema = decay * ema + (1 - decay) * weight` for every trainable
parameter (LoRA and the projector: a few million numbers, float32 as the stages keep them), by
`torch.optim.swa_utils` (`AveragedModel` with `get_ema_multi_avg_fn`). The average smooths the
last few hundred steps' noise, as averaging checkpoints does, without a second run. It is saved
into every checkpoint (`ema.safetensors`) so that `--resume true` continues it, and at the end of
training as a complete adapter folder, `<output_dir>/ema`, loadable like the run's own. Whether the
average or the run's end is kept is decided on the validation split (`mini.demo keep`).
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TrainerCallback

EMA_FILE = "ema.safetensors"
EMA_FOLDER = "ema"


class EMACallback(TrainerCallback):
    """Keeps the EMA of the model's trainable parameters; saves it with each checkpoint and at the end."""

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be between 0 and 1 (0 turns the average off), got {decay}")
        self.decay = decay
        self.step = 0
        trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.names = list(trained)
        self.trained = nn.ParameterList(trained.values())
        # AveragedModel deep-copies the module it is given: this one holds the trained weights alone,
        # never the frozen LLM. Its first update copies; the copy is the start, so that step 1 averages.
        self.averaged = AveragedModel(self.trained, multi_avg_fn=self._update)
        self.averaged.update_parameters(self.trained)

    def _update(self, averaged, current, num_averaged):
        # Early on the average would be dominated by the random start, so the effective decay grows
        # with the step (the num_updates rule of TensorFlow's ExponentialMovingAverage).
        decay = min(self.decay, (1 + self.step) / (10 + self.step))
        get_ema_multi_avg_fn(decay)(averaged, current, num_averaged)

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        self.averaged.update_parameters(self.trained)

    def average(self) -> dict[str, torch.Tensor]:
        """The average by parameter name (the averaged copy's own tensors, not copies)."""
        return {name: p.detach().contiguous() for name, p in zip(self.names, self.averaged.module)}

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file(self.average(), str(folder / EMA_FILE))

    @torch.no_grad()
    def resume_from(self, checkpoint: str | None) -> bool:
        """Load the average saved in `checkpoint`; False (and the average restarts from the current
        weights) when the checkpoint holds none."""
        path = Path(checkpoint) / EMA_FILE if checkpoint else None
        if path is None or not path.exists():
            return False
        saved = load_file(str(path))
        if set(saved) != set(self.names):
            raise ValueError(f"{path} holds other parameters than the model trains: "
                             f"{sorted(set(saved) ^ set(self.names))[:5]}")
        for name, averaged in zip(self.names, self.averaged.module):
            averaged.copy_(saved[name])
        return True

    @torch.no_grad()
    def save_average(self, model, output_dir: str) -> Path:
        """Write the average as an adapter folder `output_dir/ema` (the model's own weights are
        swapped in for the save and put back)."""
        folder = Path(output_dir) / EMA_FOLDER
        if not hasattr(model, "peft_config"):  # stage 1: the projector's weights alone, as the stage saves them
            folder.mkdir(parents=True, exist_ok=True)
            save_file(self.average(), str(folder / "model.safetensors"), metadata={"format": "pt"})
            return folder
        current = [p.detach().clone() for p in self.trained]
        for parameter, averaged in zip(self.trained, self.averaged.module):
            parameter.copy_(averaged)
        try:
            model.save_pretrained(str(folder))
        finally:
            for parameter, saved in zip(self.trained, current):
                parameter.copy_(saved)
        return folder

"""The training time of a run that may be cut off and continued.

Trainer's `train_runtime` (train_results.json) covers one call of `train()`: a run continued with
`--resume true` would report only its last part. `TrainingClock` saves the seconds trained so far
into every checkpoint (`training_clock.json`) and, on resuming, continues from the checkpoint's
count, so steps done again after a cut-off count once. At the end it writes the total to
`<output_dir>/training_clock.json`, which `mini.demo keep` records as `training_seconds`, with the
number of `train()` calls it took (`parts`: 1 for a run in one go).
"""

import json
import time
from pathlib import Path

from transformers import TrainerCallback

CLOCK_FILE = "training_clock.json"


class TrainingClock(TrainerCallback):
    def __init__(self):
        self.before = 0.0  # seconds trained up to the checkpoint the run continues from
        self.parts_before = 0  # train() calls up to that checkpoint
        self.started = None

    def resume_from(self, checkpoint: str | None) -> float:
        """Continue from the seconds and parts saved in `checkpoint` (none where it holds no clock);
        returns the seconds."""
        path = Path(checkpoint) / CLOCK_FILE if checkpoint else None
        saved = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self.before, self.parts_before = saved.get("seconds", 0.0), saved.get("parts", 1 if saved else 0)
        return self.before

    def seconds(self) -> float:
        return self.before + (time.monotonic() - self.started if self.started is not None else 0.0)

    def _write(self, folder: Path, step: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        clock = {"seconds": round(self.seconds(), 1), "step": step, "parts": self.parts_before + 1}
        (folder / CLOCK_FILE).write_text(json.dumps(clock) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(Path(args.output_dir), state.global_step)


def trained_seconds(output_dir: Path) -> float | None:
    """A finished run's training seconds: the clock's total over all its parts, or, for a run without a
    clock, Trainer's `train_runtime` (its last part)."""
    clock, results = Path(output_dir) / CLOCK_FILE, Path(output_dir) / "train_results.json"
    if clock.exists():
        return json.loads(clock.read_text())["seconds"]
    return json.loads(results.read_text()).get("train_runtime")


def training_parts(output_dir: Path) -> int | None:
    """How many `train()` calls a finished run took (1: in one go); None where its clock does not say."""
    clock = Path(output_dir) / CLOCK_FILE
    return json.loads(clock.read_text()).get("parts") if clock.exists() else None

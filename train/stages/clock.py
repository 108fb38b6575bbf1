"""The training time of a run that may be cut off and continued.

Trainer's `train_runtime` (train_results.json) covers one call of `train()`: a run continued with
`--resume true` would report only its last part. `TrainingClock` saves the seconds trained so far
into every checkpoint (`training_clock.json`) and, on resuming, continues from the checkpoint's
count, so steps done again after a cut-off count once. At the end it writes the total to
`<output_dir>/training_clock.json`, which `mini.demo keep` records as `training_seconds`.
"""

import json
import time
from pathlib import Path

from transformers import TrainerCallback

CLOCK_FILE = "training_clock.json"


class TrainingClock(TrainerCallback):
    def __init__(self):
        self.before = 0.0  # seconds trained up to the checkpoint the run continues from
        self.started = None

    def resume_from(self, checkpoint: str | None) -> float:
        """Continue from the seconds saved in `checkpoint` (0 where it holds none); returns them."""
        path = Path(checkpoint) / CLOCK_FILE if checkpoint else None
        self.before = json.loads(path.read_text())["seconds"] if path is not None and path.exists() else 0.0
        return self.before

    def seconds(self) -> float:
        return self.before + (time.monotonic() - self.started if self.started is not None else 0.0)

    def _write(self, folder: Path, step: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CLOCK_FILE).write_text(json.dumps({"seconds": round(self.seconds(), 1), "step": step}) + "\n")

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

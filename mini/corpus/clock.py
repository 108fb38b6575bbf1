"""The seconds spent making a corpus, summed over every run that worked on it.

A corpus run can be ended at any clip and continued later (finished clips are reused), so its time is
the sum over its runs, as a training run's is (`train.stages.clock`). `MakingClock` keeps that sum in
the corpus folder's `making.json`, rewritten every `every` seconds while a run works: a run that is
ended counts up to its last write. The sum belongs to one plan, the fingerprint of the clips the
settings ask for (`plan_fingerprint`); a run with other settings starts a new sum.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

MAKING_FILE = "making.json"


def plan_fingerprint(relpaths) -> str:
    """A short fingerprint of the clips a corpus run plans (their relative paths, in any order)."""
    return hashlib.sha256("\n".join(sorted(relpaths)).encode()).hexdigest()[:16]


class MakingClock:
    """`with MakingClock(out, plan):` around a corpus run; `seconds()` and `runs` are the plan's totals."""

    def __init__(self, out: Path, plan: str, every: float = 30.0):
        self.path, self.plan, self.every = Path(out) / MAKING_FILE, plan, every
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        same = saved.get("plan") == plan
        self.before = saved["seconds"] if same else 0.0
        self.runs = (saved["runs"] if same else 0) + 1
        self.started = None
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._keep_writing, name="making-clock", daemon=True)

    def seconds(self) -> float:
        return self.before + (time.monotonic() - self.started if self.started is not None else 0.0)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_suffix(".part")
        part.write_text(json.dumps({"plan": self.plan, "seconds": round(self.seconds(), 1), "runs": self.runs}) + "\n")
        os.replace(part, self.path)  # never a half-written record

    def _keep_writing(self) -> None:
        while not self._stop.wait(self.every):
            self.write()

    def __enter__(self) -> "MakingClock":
        self.started = time.monotonic()
        self.write()
        self._writer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._writer.join()
        self.write()

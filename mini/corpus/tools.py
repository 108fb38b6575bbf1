"""Running the corpus's system tools (flite, festival, espeak-ng, sox) and the error a failed clip raises."""

from __future__ import annotations

import subprocess


class ClipError(Exception):
    """A clip that could not be made; ``reason`` is a short category for the report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def run_tool(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise ClipError("missing-tool", f"{cmd[0]} not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClipError("timeout", f"{what} ran over 120 s") from exc
    # festival exits 0 after a Scheme error, so its stderr is checked too.
    if proc.returncode != 0 or "SIOD ERROR" in proc.stderr:
        raise ClipError(f"{what}-failed", f"rc={proc.returncode} {proc.stderr.strip()[:200]}")
    return proc

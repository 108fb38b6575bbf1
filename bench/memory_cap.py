"""Run a command under a hard memory limit: a child memory cgroup of the one this process is in.

A step that finishes under a cap of N bytes fits in N bytes: the kernel charges the group with the
step's anonymous memory and the page cache it reads in, takes back clean file pages (the mapped
checkpoint shards) when the group reaches its limit, and kills the step when anonymous memory alone
would pass it. Without swap nothing can hide elsewhere. Pages already in the page cache stay charged
to whoever read them first, so `evict_page_cache` drops the step's input files from it beforehand.

cgroup v1 (`memory.limit_in_bytes`) and v2 (`memory.max`) are both handled; `MemoryCap.available()`
says whether this machine lets the process make a child group (root in a container usually can).
"""

import os
import re
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def own_memory_group(root: Path = ROOT, proc_cgroup: str | None = None) -> tuple[Path, int] | None:
    """(folder of this process's memory cgroup, cgroup version), or None where there is no memory controller."""
    text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return root / "memory" / path.lstrip("/"), 1
    for line in text.splitlines():
        if line.startswith("0::") and (root / line[3:].lstrip("/") / "memory.max").exists():
            return root / line[3:].lstrip("/"), 2
    return None


class MemoryCap:
    """A child memory cgroup limited to `limit_bytes`; `enter` (a `preexec_fn`) moves the process into it."""

    def __init__(self, name: str, limit_bytes: int, root: Path = ROOT, proc_cgroup: str | None = None):
        found = own_memory_group(root, proc_cgroup)
        if found is None:
            raise RuntimeError(f"no memory cgroup controller under {root}")
        parent, self.version = found
        self.folder, self.limit_bytes = parent / f"{name}-{os.getpid()}", int(limit_bytes)
        self.folder.mkdir()
        try:
            if self.version == 1:
                (self.folder / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
            else:  # memory.max exists only where the parent hands the memory controller down
                (self.folder / "memory.max").write_text(str(self.limit_bytes))
                swap = self.folder / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        except OSError:
            self.folder.rmdir()
            raise

    @classmethod
    def available(cls, root: Path = ROOT) -> bool:
        try:
            cls("probe", 2**30, root).remove()
        except (OSError, RuntimeError):
            return False
        return True

    def enter(self) -> None:
        (self.folder / "cgroup.procs").write_text(str(os.getpid()))

    def peak_bytes(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int((self.folder / name).read_text())

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        found = re.search(r"^oom_kill (\d+)$", (self.folder / name).read_text(), re.M)
        return int(found.group(1)) if found else 0

    def remove(self) -> None:
        self.folder.rmdir()  # the group's processes have ended; its charges move to the parent


def evict_page_cache(folder: Path) -> int:
    """Write back and drop every file under `folder` from the page cache (no root needed); the bytes it covered."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            total += path.stat().st_size
    return total

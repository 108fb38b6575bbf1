"""bench.memory_cap: finding this process's memory cgroup, a hard cap that kills what passes it, and
dropping files from the page cache (the rehearsal's proof that a step fits in its memory goal)."""

import subprocess
import sys

import pytest

from bench.memory_cap import MemoryCap, evict_page_cache, own_memory_group

V1 = "9:name=systemd:/\n4:memory:/jobs/abc\n1:cpu,cpuacct:/\n0::/\n"


def test_own_memory_group_reads_v1_and_v2(tmp_path):
    assert own_memory_group(tmp_path, V1) == (tmp_path / "memory" / "jobs" / "abc", 1)
    (tmp_path / "user.slice" / "job").mkdir(parents=True)
    (tmp_path / "user.slice" / "job" / "memory.max").write_text("max\n")
    assert own_memory_group(tmp_path, "0::/user.slice/job\n") == (tmp_path / "user.slice" / "job", 2)
    assert own_memory_group(tmp_path, "0::/elsewhere\n") is None  # v2 without the memory controller


def test_a_cap_writes_its_limit_and_refuses_without_a_controller(tmp_path):
    (tmp_path / "memory" / "jobs" / "abc").mkdir(parents=True)
    cap = MemoryCap("step", 7 * 10**9, tmp_path, V1)
    assert cap.folder.parent == tmp_path / "memory" / "jobs" / "abc" and cap.folder.name.startswith("step-")
    assert (cap.folder / "memory.limit_in_bytes").read_text() == "7000000000"
    with pytest.raises(RuntimeError) as info:
        MemoryCap("step", 10**9, tmp_path, "0::/elsewhere\n")
    assert str(info.value) == f"no memory cgroup controller under {tmp_path}"


ALLOCATE = "import sys; block = bytearray(int(sys.argv[1]) * 2**20); block[::4096] = b'x' * len(block[::4096]); print('held')"


@pytest.mark.skipif(not MemoryCap.available(), reason="the kernel gives this process no memory cgroup it may write")
def test_a_step_over_its_cap_is_killed_and_one_under_it_runs():
    results = {}
    for mib in (64, 400):
        cap = MemoryCap("test", 256 * 2**20)
        try:
            run = subprocess.run([sys.executable, "-c", ALLOCATE, str(mib)], preexec_fn=cap.enter, capture_output=True, text=True)
            results[mib] = (run.returncode, run.stdout.strip(), cap.peak_bytes(), cap.oom_kills())
        finally:
            cap.remove()
    returncode, stdout, peak, kills = results[64]
    assert (returncode, stdout, kills) == (0, "held", 0) and 64 * 2**20 < peak <= 256 * 2**20
    returncode, stdout, peak, kills = results[400]
    assert (returncode, stdout, kills) == (-9, "", 1) and peak <= 256 * 2**20


def _cached_bytes(path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_evict_page_cache_drops_the_folders_files(tmp_path):
    data = tmp_path / "shards" / "model.safetensors"
    data.parent.mkdir()
    data.write_bytes(b"\1" * 8 * 2**20)
    data.read_bytes()
    assert _cached_bytes(data) == 8 * 2**20
    assert evict_page_cache(tmp_path) == 8 * 2**20
    assert _cached_bytes(data) == 0

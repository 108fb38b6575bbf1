"""The release path's rehearsal (`bench.rehearse_7b`) at its tiny scale: every step a user runs, in order,
on random weights in the Hub layout (`make rehearse-7b` runs the same steps at full size)."""

import json
import os
import sys

import pytest

from bench import rehearse_7b
from bench.memory_cap import MemoryCap

STEPS = ["checkpoints", "toy_audio", "build", "stage1", "stage1_ctc", "stage2", "merge", "evaluate", "card", "push",
         "fresh_process", "nf4_audio_only"]  # fmt: skip


def test_every_release_step_runs_at_tiny_scale(tmp_path):
    out = tmp_path / "rehearsal.json"
    results = rehearse_7b.main(["--scale", "tiny", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert json.loads(out.read_text()) == results
    assert [row["step"] for row in results["steps"]] == STEPS
    assert all(row["returncode"] == 0 and row["seconds"] > 0 and row["peak_rss_gib"] > 0 for row in results["steps"])
    target = "Qwen2AudioGraftForConditionalGeneration"
    fresh = results["outputs"]["fresh_process"]
    assert (fresh["class"], fresh["pipeline"], fresh["dtype"]) == (target, "Qwen2AudioGraftASRPipeline", "torch.bfloat16")
    assert fresh["forward_calls"] >= 1  # the pushed model generated, not just loaded
    assert results["outputs"]["nf4_audio_only"]["visual"] is True  # the vision tower left out
    assert results["outputs"]["nf4_audio_only"]["new_tokens"] == 4
    counts = results["parameters"]
    assert counts["total"] == sum(counts[part] for part in ("llm", "vision", "encoder", "projector"))
    assert counts["lora"] > 0 and counts["projector"] > 0
    assert not (tmp_path / "work").exists()  # the work folder is given back
    capped = {row["step"]: row["memory_cap_gb"] for row in results["steps"] if "memory_cap_gb" in row}
    if MemoryCap.available():  # each memory goal a hard limit, met with no OOM kill
        assert capped == {"stage2": 16.0, "evaluate": 18.5, "fresh_process": 18.5, "nf4_audio_only": 7.0}
        assert all(0 < row["cgroup_peak_gb"] < row["memory_cap_gb"] and row["oom_kills"] == 0
                   for row in results["steps"] if "memory_cap_gb" in row)  # fmt: skip
    else:
        assert capped == {}


def test_a_step_shorter_than_one_sample_still_has_its_peak_memory(tmp_path):
    rows = []
    code = "import sys; b = bytearray(64 * 2**20); sys.exit(3 if len(sys.argv) > 1 else 0)"
    row = rehearse_7b.run_step("quick", [sys.executable, "-c", code], tmp_path, dict(os.environ), rows.append)
    assert rows == [row] and row["returncode"] == 0
    assert row["peak_rss_gib"] >= 0.06  # the 64 MiB it held, from the kernel's own peak: no sample saw it
    with pytest.raises(RuntimeError, match=r"^step failing failed \(exit 3\):\n$"):
        rehearse_7b.run_step("failing", [sys.executable, "-c", code, "fail"], tmp_path, dict(os.environ), rows.append)
    assert rows[-1]["returncode"] == 3

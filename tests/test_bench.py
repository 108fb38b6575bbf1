"""The benchmark runs end to end on the tiny graft and reports what the issue asks for."""

import json

from bench import bench


def test_bench_on_the_tiny_graft_reports_tokens_times_and_split(tmp_path, capsys):
    out = tmp_path / "results.json"
    bench.main(["--model", str(tmp_path / "absent"), "--fallback", str(tmp_path / "tiny"), "--lengths", "2", "5",
                "--repeats", "1", "--new_tokens", "3", "--batch_size", "2", "--out", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [r["seconds"] for r in rows] == [2, 5]
    assert [(r["tokens_reference"], r["tokens_ours"]) for r in rows] == [(1500, 100), (1500, 250)]  # tiny: downsample 1
    five = rows[1]
    assert set(five["split"]) == {"reference_b1", "ours_b1", "ours_b2"}
    assert all(set(parts) == {"encoder", "prefill", "decode"} for parts in five["split"].values())
    assert all(five[key]["p50_s"] > 0 and five[key]["rtfx"] > 0 for key in ("reference_b1", "ours_b1", "ours_b2"))
    assert all(r["ours_b2"]["runs"] == 1 and r["reference_b1"]["runs"] == 1 for r in rows)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    ratio = five["reference_b1"]["p50_s"] / five["ours_b1"]["p50_s"]
    assert last == f"batch-1 latency ratio for 5 s clips, reference / ours: {ratio:.1f}x"


def test_auto_dtype_is_float32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(bench.torch.backends.mkldnn, "is_available", lambda: False)
    assert bench.cpu_dtype() == "float32"
    monkeypatch.setattr(bench.torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(bench.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert bench.cpu_dtype() == "bfloat16"


def test_long_batches_are_timed_long_repeats_times_and_a_cut_reference_input_is_timed_once(tmp_path, capsys):
    out = tmp_path / "results.json"
    bench.main(["--model", str(tmp_path / "absent"), "--fallback", str(tmp_path / "tiny"), "--lengths", "2", "30", "70",
                "--repeats", "2", "--new_tokens", "2", "--batch_size", "2", "--out", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [(r["ours_b1"]["runs"], r["ours_b2"]["runs"]) for r in rows] == [(2, 2), (2, 1), (2, 1)]
    assert [r.get("reference_same_as") for r in rows] == [None, None, 30]  # 70 s cut to 30 s: the 30 s input
    assert rows[2]["reference_b1"] == rows[1]["reference_b1"]
    assert f"| 70 s | 1500 | 3500 | {rows[1]['reference_b1']['p50_s']} s (= 30 s) |" in capsys.readouterr().out


def test_decode_probe_times_both_caches_and_they_give_the_same_tokens(tiny_dir):
    from bench import decode_probe

    results = decode_probe.main(["--model", str(tiny_dir), "--seconds", "2"])
    assert set(results) == {"dynamic", "static"}
    assert results["dynamic"]["tokens"] == results["static"]["tokens"] and len(results["static"]["tokens"]) == 16
    assert all(r["sixteen_tokens_s"] > 0 and r["first_token_s"] > 0 for r in results.values())

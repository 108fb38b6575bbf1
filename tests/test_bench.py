"""The benchmark runs end to end on the tiny graft and reports what the issue asks for."""

import json
import shutil

import pytest

from bench import bench
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration


def test_bench_on_the_tiny_graft_reports_tokens_times_and_split(tiny_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "graft"
    shutil.copytree(tiny_dir, folder)
    settings = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**settings, "num_beams": 2}))  # a folder shipping beams
    beams, generate = [], Qwen2AudioGraftForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        beams.append(self.generation_config.num_beams)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Qwen2AudioGraftForConditionalGeneration, "generate", spy)
    out = tmp_path / "results.json"
    bench.main(["--model", str(folder), "--lengths", "2", "5", "--repeats", "1", "--new_tokens", "3", "--batch_size", "2",
                "--out", str(out)])  # fmt: skip
    results = json.loads(out.read_text())
    rows = results["rows"]
    assert [r["seconds"] for r in rows] == [2, 5]
    assert [(r["tokens_reference"], r["tokens_ours"]) for r in rows] == [(1500, 100), (1500, 250)]  # tiny: downsample 1
    five = rows[1]
    assert set(five["split"]) == {"reference_b1", "ours_b1", "ours_b2"}
    assert all(set(parts) == {"encoder", "prefill", "decode"} for parts in five["split"].values())
    assert all(five[key]["p50_s"] > 0 and five[key]["rtfx"] > 0 for key in ("reference_b1", "ours_b1", "ours_b2"))
    assert all(r["ours_b2"]["runs"] == 1 and r["reference_b1"]["runs"] == 1 for r in rows)
    # pinned greedy for the table, then the folder's own 2 beams for the 5 s clips, labelled
    assert (results["meta"]["num_beams"], results["meta"]["shipped_num_beams"]) == (1, 2)
    shipped = results["shipped_decoding_5s"]
    assert shipped["num_beams"] == 2 and shipped["seconds"] == 5
    assert set(beams) == {1, 2} and beams[-1] == 2 and beams.index(2) > len(beams) // 2
    lines = capsys.readouterr().out.strip().splitlines()
    greedy = five["reference_b1"]["p50_s"] / five["ours_b1"]["p50_s"]
    wide = shipped["reference_b1"]["p50_s"] / shipped["ours_b1"]["p50_s"]
    assert lines[-2:] == [f"batch-1 latency ratio for 5 s clips, reference / ours, 1 beam(s): {greedy:.1f}x",
                          f"batch-1 latency ratio for 5 s clips, reference / ours, 2 beams (the folder's own decoding): "
                          f"{wide:.1f}x"]  # fmt: skip


def test_bench_refuses_a_missing_graft_and_never_writes_tiny_figures_to_the_tracked_file(tmp_path):
    with pytest.raises(SystemExit) as info:
        bench.main(["--model", str(tmp_path / "absent")])
    assert str(info.value) == (f"{tmp_path / 'absent'} holds no graft: make bench builds build/mini-graft (as make demo "
                               "does), or pass --model FOLDER, or --tiny for the code path alone")  # fmt: skip
    with pytest.raises(SystemExit) as info:
        bench.main(["--tiny", "--out", "bench/cpu-results.json"])
    assert str(info.value) == "--tiny times a random graft: its figures never go to the tracked bench/cpu-results.json"


def test_auto_dtype_is_float32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(bench.torch.backends.mkldnn, "is_available", lambda: False)
    assert bench.cpu_dtype() == "float32"
    monkeypatch.setattr(bench.torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(bench.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert bench.cpu_dtype() == "bfloat16"


def test_long_batches_are_timed_long_repeats_times_and_a_cut_reference_input_is_timed_once(tiny_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    bench.main(["--model", str(tiny_dir), "--lengths", "2", "30", "70",
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


def test_prefill_logits_times_both_ways_and_they_give_the_same_logits(tiny_dir):
    from bench import prefill_logits

    results = prefill_logits.main(["--model", str(tiny_dir), "--batch_size", "2", "--seconds", "1", "--repeats", "1"])
    assert results["bfloat16"]["max_abs_difference"] == 0.0
    assert results["float32"]["max_abs_difference"] < 1e-5  # float32 matmuls of other shapes block differently
    for dtype in ("bfloat16", "float32"):
        assert results[dtype]["parent_slice_seconds"] > 0 and results[dtype]["gathered_seconds"] > 0


def test_eval_cost_times_each_part_of_an_evaluation(tiny_dir, tmp_path):
    from bench import eval_cost
    from train.building.toy_audio import make_toy_audio

    manifests = make_toy_audio(tmp_path / "audio", train=2, devtest=4, words=4, max_words=1)
    results = eval_cost.main(["--model", str(tiny_dir), "--data", str(manifests["devtest"]), "--clips", "3",
                              "--batch_size", "2", "--max_new_tokens", "2"])  # fmt: skip
    assert results["clips"] == 3
    assert set(results["listening"]) == {"seconds", "own", "zeroed", "shuffled"}
    # the loss pass is Trainer's mean of batch means; the listening check's own loss is over all answer tokens
    assert results["loss"]["value"] > 0 and results["listening"]["own"] > 0
    assert 0 <= results["transcripts"]["wer"] and results["total_seconds"] > 0


def test_step_profile_times_each_part_of_a_training_step(tiny_dir, tmp_path):
    from bench import step_profile
    from train.building.toy_audio import make_toy_audio

    manifests = make_toy_audio(tmp_path / "audio", train=12, devtest=2, words=4, max_words=2)
    common = ["--model", str(tiny_dir), "--data", str(manifests["train"]), "--steps", "2", "--batch_size", "2",
              "--lora_r", "2"]  # fmt: skip
    single = step_profile.main(common + ["--join_clips", "0"])
    assert set(single["seconds"]) == {"collate", "encoder", "projector+LLM forward", "backward", "optimizer"}
    assert all(value > 0 for value in single["seconds"].values())
    assert abs(single["step_seconds"] - sum(single["seconds"].values())) < 1e-9
    # every item joined with one other clip: about twice the audio and answer tokens of single clips
    joined = step_profile.main(common + ["--join_clips", "1", "--join_max_clips", "2", "--join_max_seconds", "30"])
    assert joined["per_item"]["prompt"] == single["per_item"]["prompt"] > 0
    assert joined["per_item"]["audio"] > 1.5 * single["per_item"]["audio"]
    assert joined["per_item"]["answer"] > 1.5 * single["per_item"]["answer"]
    assert 0 <= joined["per_item"]["padding"] < 1


def test_beam_prefill_times_both_ways_and_they_write_the_same_texts(tiny_dir, tmp_path):
    from bench import beam_prefill
    from train.building.toy_audio import make_toy_audio

    manifests = make_toy_audio(tmp_path / "audio", train=2, devtest=3, words=4, max_words=1)
    results = beam_prefill.main(["--model", str(tiny_dir), "--data", str(manifests["devtest"]), "--clips", "3",
                                 "--batch_size", "2", "--num_beams", "3", "--rounds", "1", "--max_new_tokens", "3",
                                 "--speech_detector", "energy"])  # fmt: skip
    assert results["clips"] == 3 and results["same_texts"] is True
    # the encoder reads each clip's window once, against once for each of the 3 beams
    assert results["encoder_windows"] == {"once": 3, "every": 9}
    assert len(results["seconds"]["once"]) == len(results["seconds"]["every"]) == 1

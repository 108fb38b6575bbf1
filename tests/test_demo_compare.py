"""mini.demo: compare (pipeline transcripts against a train.evaluate run) and the pieces kept in bf16."""

import json
import shlex
import shutil

import pytest

from mini import demo


def test_compare_counts_identical_transcripts_and_prints_the_others(tmp_path, monkeypatch, capsys):
    results = tmp_path / "demo-results.json"
    clips = [{"voice": "cards", "reference": "ten of clubs", "graft": "Ten of clubs.", "whisper_base": "Ten of clubs."},
             {"voice": "librivox", "reference": "a b", "graft": "A b.", "whisper_base": "A b."}]
    results.write_text(json.dumps({"clips": clips}))
    monkeypatch.setattr(demo, "RESULTS", results)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"hypothesis": "Ten of clubs. "}) + "\n" + json.dumps({"hypothesis": "A c."}) + "\n")
    assert demo.compare(predictions) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["[librivox] differs", "  PIPELINE A b.", "  EVALUATE A c.", "1 of 2 transcripts identical"]
    predictions.write_text(json.dumps({"hypothesis": "x"}) + "\n")
    with pytest.raises(ValueError) as info:
        demo.compare(predictions)
    assert str(info.value) == f"{predictions} holds 1 clips, the demo 2"


def test_copy_as_bf16_halves_float_tensors_and_keeps_metadata(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source, target = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.tensor([1.0, 0.1], dtype=torch.float32), "n": torch.tensor([3])}, str(source),
              metadata={"format": "pt"})
    demo.copy_as_bf16(source, target)
    loaded = load_file(str(target))
    assert loaded["w"].dtype == torch.bfloat16 and loaded["w"].tolist() == [1.0, 0.10009765625]
    assert loaded["n"].dtype == torch.int64 and loaded["n"].tolist() == [3]
    with safe_open(str(target), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}


def _segments(*spans, command="c"):
    from train.precision import hardware

    return [{"steps": span, "samples_seen": 80, "train_seconds": 5, "command": command, "hardware": hardware()}
            for span in spans]  # fmt: skip


def _keep_folders(tmp_path, monkeypatch):
    """A base graft's config (audio_downsample 4) as demo.BASE, and tmp_path/trained as demo.TRAINED."""
    base, trained, run = tmp_path / "base", tmp_path / "trained", tmp_path / "run"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"audio_downsample": 4, "projector_type": "linear",
                                                  "projector_norm": True, "encode_padding": False}))  # fmt: skip
    monkeypatch.setattr(demo, "BASE", base)
    monkeypatch.setattr(demo, "TRAINED", trained)
    return base, trained, run


def test_keep_copies_the_run_in_bf16_and_records_its_segments(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    base, trained, run = _keep_folders(tmp_path, monkeypatch)
    (trained / "stage1").mkdir(parents=True)  # pieces of an older recipe are replaced, not kept beside
    (trained / "generation_config.json").write_text('{"num_beams": 4}\n')  # the decoding outlives the pieces
    run.mkdir()
    save_file({"w": torch.full((2,), 3.0)}, str(run / "adapter_model.safetensors"))
    (run / "training.png").write_bytes(b"png")
    (run / "adapter_config.json").write_text("{}")
    (run / "segments.json").write_text(json.dumps(_segments("0-10", "10-20")))
    def check(step, wer):
        return [{"step": step, "loss": 3.0}, {"step": step, "eval_wer": wer, "eval_loss_own_audio": 1.23456}]

    for step, history in ((10, check(10, 0.99)), (20, check(10, 0.9) + check(20, 0.5))):  # the last one is read
        (run / f"checkpoint-{step}").mkdir()
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    recipe = demo.keep(run, note="n")
    saved = load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"]
    assert saved.dtype == torch.bfloat16 and saved.tolist() == [3.0, 3.0]
    assert sorted(p.name for p in trained.iterdir()) == ["generation_config.json", "recipe.json", "stage2"]
    assert (trained / "generation_config.json").read_text() == '{"num_beams": 4}\n'
    assert (trained / "stage2" / "training.png").read_bytes() == b"png"
    assert json.loads((trained / "recipe.json").read_text()) == recipe
    assert {k: recipe[k] for k in ("audio_downsample", "encode_padding", "steps", "note")} == {
        "audio_downsample": 4, "encode_padding": False, "steps": 20, "note": "n"}  # fmt: skip
    assert [s["steps"] for s in recipe["segments"]] == ["0-10", "10-20"]
    assert recipe["evaluations"] == [{"step": 10, "eval_loss_own_audio": 1.2346, "eval_wer": 0.9},
                                     {"step": 20, "eval_loss_own_audio": 1.2346, "eval_wer": 0.5}]  # fmt: skip
    assert set(recipe["hardware"]) == {"cpu", "cores", "cpu_bf16", "torch", "transformers"}

    # a later run started from these pieces (--init_adapter): its segments follow the kept ones
    (run / "segments.json").write_text(json.dumps(_segments("0-5", command="more")))
    again = demo.keep(run, continues=True)
    assert [(s["steps"], s["command"]) for s in again["segments"]] == [("0-10", "c"), ("10-20", "c"), ("20-25", "more")]
    assert again["steps"] == 25
    assert [e["step"] for e in again["evaluations"]] == [10, 20, 30, 40]  # the later run's, shifted by 20
    # its plot spans every kept evaluation, not only the later run's
    assert (trained / "stage2" / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_keep_records_the_base_the_run_trained_on(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    default, other, run = tmp_path / "mini-base", tmp_path / "mini-base-k4-mlp-real", tmp_path / "run"
    for folder, downsample, projector in ((default, 8, "linear"), (other, 4, "mlp")):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"audio_downsample": downsample, "projector_type": projector,
                                                        "projector_norm": True, "encode_padding": False}))  # fmt: skip
    monkeypatch.setattr(demo, "BASE", default)
    monkeypatch.setattr(demo, "TRAINED", tmp_path / "trained")
    run.mkdir()
    save_file({"w": torch.ones(2)}, str(run / "adapter_model.safetensors"))
    (run / "training.png").write_bytes(b"png")
    (run / "segments.json").write_text(json.dumps(_segments("0-10")))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(other)}))
    assert {k: demo.keep(run)[k] for k in ("audio_downsample", "projector_type")} == {
        "audio_downsample": 4, "projector_type": "mlp"}  # fmt: skip
    # a base folder that no longer exists: build/mini-base, which assemble rebuilds to the recipe
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    assert demo.keep(run)["audio_downsample"] == 8


def _kept_r2_pieces(tmp_path, monkeypatch, audio_downsample):
    """A base graft at audio_downsample 1 (encoder width 3) and, as demo.TRAINED, kept pieces of 20
    steps: LoRA r=2 and a projector over `audio_downsample` frames."""
    import torch
    from safetensors.torch import save_file

    base, trained, run = tmp_path / "mini-base-k1", tmp_path / "trained", tmp_path / "run"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"audio_downsample": 1, "projector_type": "linear",
                                                  "projector_norm": True, "encode_padding": False,
                                                  "audio_config": {"d_model": 3}}))  # fmt: skip
    monkeypatch.setattr(demo, "TRAINED", trained)
    (trained / "stage2").mkdir(parents=True)
    save_file({"base_model.model.model.audio_projector.linear_1.weight": torch.ones(4, 3 * audio_downsample),
               "base_model.model.x.lora_A.weight": torch.ones(2, 4), "base_model.model.x.lora_B.weight": torch.ones(4, 2)},
              str(trained / "stage2" / "adapter_model.safetensors"))  # fmt: skip
    (trained / "stage2" / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    (trained / "recipe.json").write_text(json.dumps({"steps": 20, "segments": _segments("0-20"), "evaluations": []}))
    return base, trained, run


def test_keep_records_the_refine_step_between_the_kept_pieces_and_the_run(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from train.refine import main as refine_main

    base, trained, run = _kept_r2_pieces(tmp_path, monkeypatch, audio_downsample=2)
    refined = tmp_path / "refined"
    refine_main(["--adapter", str(trained / "stage2"), "--model_path", str(base), "--output", str(refined), "--lora_r", "3"])
    run.mkdir()
    save_file({"w": torch.ones(2)}, str(run / "adapter_model.safetensors"))
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (run / "segments.json").write_text(json.dumps(_segments("0-5", command=f"python -m m --init_adapter {refined}")))
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 5, "loss": 1.0}]}))
    recipe = demo.keep(run, continues=True)
    assert [s["steps"] for s in recipe["segments"]] == ["0-20", "20-20", "20-25"]
    step = recipe["segments"][1]
    assert step["command"] == shlex.join(["python", "-m", "train.refine", "--adapter", str(trained / "stage2"),
                                          "--model_path", str(base), "--output", str(refined), "--lora_r", "3"])  # fmt: skip
    assert step["refine"] == {"from": {"audio_downsample": 2, "lora_r": 2, "lora_alpha": 4},
                              "to": {"audio_downsample": 1, "lora_r": 3, "lora_alpha": 6}}  # fmt: skip
    assert (recipe["audio_downsample"], recipe["steps"]) == (1, 25)


def test_keep_records_the_mean_of_the_kept_pieces_and_a_run_after_that_run(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from train.average import main as average_main

    base, trained, run = _keep_folders(tmp_path, monkeypatch)
    config = json.dumps({"r": 2, "lora_alpha": 4, "base_model_name_or_path": str(base)})
    for folder, value in ((trained / "stage2", 1.0), (run, 3.0)):
        folder.mkdir(parents=True)
        save_file({"w": torch.full((2,), value)}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(config)
    (trained / "recipe.json").write_text(json.dumps({"steps": 20, "segments": _segments("0-20"), "evaluations": []}))
    (run / "segments.json").write_text(json.dumps(_segments("0-5", command="more")))
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text(json.dumps(
        {"log_history": [{"step": 5, "loss": 1.0}, {"step": 5, "eval_wer": 0.4}]}))  # fmt: skip
    mean = tmp_path / "mean"
    average_main(["--adapters", str(trained / "stage2"), str(run), "--output", str(mean)])
    with pytest.raises(ValueError) as info:
        demo.keep(mean)
    assert str(info.value) == (f"{mean} averages {[str(trained / 'stage2'), str(run)]}: keep records the mean of "
                               f"{trained / 'stage2'} (or pieces train.refine carried from them) and one run that "
                               "continued them, with --continues")  # fmt: skip
    assert load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"].tolist() == [1.0, 1.0]
    recipe = demo.keep(mean, continues=True)
    assert load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"].tolist() == [2.0, 2.0]
    assert [(s["steps"], s["command"]) for s in recipe["segments"][:2]] == [("0-20", "c"), ("20-25", "more")]
    step = recipe["segments"][2]
    assert (step["steps"], step["samples_seen"], step["average"]) == ("25-25", 0, [str(trained / "stage2"), str(run)])
    assert step["command"] == shlex.join(["python", "-m", "train.average", "--adapters", str(trained / "stage2"),
                                          str(run), "--output", str(mean)])  # fmt: skip
    assert (recipe["steps"], recipe["evaluations"]) == (25, [{"step": 25, "eval_wer": 0.4}])
    assert set(recipe["hardware"]) == {"cpu", "cores", "cpu_bf16", "torch", "transformers"}


def test_keep_records_a_run_at_a_larger_rank_averaged_and_cut_back(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from train.average import main as average_main
    from train.refine import main as refine_main

    base, trained, run = _kept_r2_pieces(tmp_path, monkeypatch, audio_downsample=1)
    grown, mean, cut = tmp_path / "grown", tmp_path / "mean", tmp_path / "cut"
    refine_main(["--adapter", str(trained / "stage2"), "--model_path", str(base), "--output", str(grown), "--lora_r", "4"])
    shutil.copytree(grown, run)  # the run: the grown pieces trained on
    (run / "refine.json").unlink()
    save_file({k: 3 * v for k, v in load_file(str(grown / "adapter_model.safetensors")).items()},
              str(run / "adapter_model.safetensors"))  # fmt: skip
    (run / "segments.json").write_text(json.dumps(_segments("0-5", command=f"python -m m --init_adapter {grown}")))
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 5, "loss": 1.0}]}))
    average_main(["--adapters", str(grown), str(run), "--output", str(mean)])
    refine_main(["--adapter", str(mean), "--model_path", str(base), "--output", str(cut), "--lora_r", "2"])
    recipe = demo.keep(cut, continues=True)
    assert [s["steps"] for s in recipe["segments"]] == ["0-20", "20-20", "20-25", "25-25", "25-25"]
    assert recipe["segments"][1]["refine"]["to"]["lora_r"] == 4 and recipe["segments"][3]["average"] == [str(grown), str(run)]
    last = recipe["segments"][4]
    assert last["command"] == shlex.join(["python", "-m", "train.refine", "--adapter", str(mean), "--model_path", str(base),
                                          "--output", str(cut), "--lora_r", "2"])  # fmt: skip
    assert last["refine"] == {"from": {"lora_r": 4, "lora_alpha": 8, "audio_downsample": 1},
                              "to": {"audio_downsample": 1, "lora_r": 2, "lora_alpha": 4}}  # fmt: skip
    assert recipe["steps"] == 25
    kept = load_file(str(trained / "stage2" / "adapter_model.safetensors"))
    assert kept["base_model.model.x.lora_A.weight"].shape == (2, 4)
    assert json.loads((trained / "stage2" / "adapter_config.json").read_text())["r"] == 2


def test_keep_refuses_a_run_without_its_segment_record(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        demo.training_segments(tmp_path)
    assert str(info.value) == f"{tmp_path / 'segments.json'} not found: the run's stage records each training segment there"


def test_decoding_settings_go_over_the_generation_config(tmp_path):
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[5, 6])
    assert demo.apply_decoding(config, tmp_path).num_beams == 1  # no file: as it was
    (tmp_path / "generation_config.json").write_text('{"num_beams": 4}')
    assert demo.apply_decoding(config, tmp_path).to_diff_dict() == GenerationConfig(
        do_sample=False, num_beams=4, eos_token_id=[5, 6]).to_diff_dict()  # fmt: skip
    (tmp_path / "generation_config.json").write_text('{"num_beams": 4, "audio_guidance_scale": 1.5}')
    guided = demo.apply_decoding(GenerationConfig(do_sample=False, num_beams=1), tmp_path)
    assert (guided.num_beams, guided.audio_guidance_scale) == (4, 1.5)
    guided.save_pretrained(tmp_path / "saved")  # the graft's own setting travels with its generation config
    assert GenerationConfig.from_pretrained(tmp_path / "saved").audio_guidance_scale == 1.5
    (tmp_path / "generation_config.json").write_text('{"num_beam": 4}')
    with pytest.raises(ValueError) as info:
        demo.apply_decoding(config, tmp_path)
    assert str(info.value) == f"{tmp_path / 'generation_config.json'}: not generation settings: ['num_beam']"


@pytest.mark.skipif(not (shutil.which("flite") and shutil.which("sox")),
                    reason="needs flite and sox (apt-get install flite sox)")  # fmt: skip
def test_training_voices_read_the_held_out_voices_texts(tmp_path):
    import soundfile

    manifest = tmp_path / "devtest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in [
        {"audio": "a.wav", "text": "Stay here today.", "voice": "flite-slt"},
        {"audio": "b.wav", "text": "ten of clubs", "voice": "cards"},
        {"audio": "c.wav", "text": "Go home now.", "voice": "flite-slt"}]))  # fmt: skip
    written = demo.training_voices(tmp_path / "out", manifest)
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert [(r["voice"], r["text"]) for r in rows] == [
        ("flite-awb", "Stay here today."), ("flite-awb", "Go home now."),
        ("flite-rms", "Stay here today."), ("flite-rms", "Go home now.")]  # fmt: skip
    for row in rows:
        audio, rate = soundfile.read(written.parent / row["audio"])
        assert rate == 16000 and audio.ndim == 1 and len(audio) > 0.3 * rate
        assert row["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
    files = sorted(str(p.relative_to(written.parent)) for p in written.parent.rglob("*") if p.is_file())
    assert files == sorted([r["audio"] for r in rows] + ["devtest.jsonl"])
    first = demo.training_voices(tmp_path / "first", manifest, voices=("flite-kal",), max_texts=1)
    assert [(json.loads(line)["voice"], json.loads(line)["text"]) for line in first.read_text().splitlines()] == [
        ("flite-kal", "Stay here today.")]  # fmt: skip
    with pytest.raises(ValueError) as info:
        demo.training_voices(tmp_path / "zero", manifest, max_texts=0)
    assert str(info.value) == "max_texts must be at least 1, got 0"
    assert not (tmp_path / "zero").exists()
    with pytest.raises(ValueError) as info:
        demo.training_voices(tmp_path / "none", manifest, source_voice="festival-cmu_us_slt_arctic_hts")
    assert str(info.value) == f"{manifest} holds no festival-cmu_us_slt_arctic_hts clips"

"""mini.demo: compare (pipeline transcripts against a train.evaluate run) and keep (choices on validation)."""

import json

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


def _keep_folders(tmp_path, monkeypatch):
    """A base graft's config (audio_downsample 4) as demo.BASE, tmp_path/trained as demo.TRAINED, and a
    finished run with an EMA folder and two checkpoints."""
    import torch
    from safetensors.torch import save_file

    base, trained, run = tmp_path / "base", tmp_path / "trained", tmp_path / "run"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"audio_downsample": 4, "projector_type": "linear",
                                                  "projector_norm": True, "encode_padding": False}))  # fmt: skip
    monkeypatch.setattr(demo, "BASE", base)
    monkeypatch.setattr(demo, "TRAINED", trained)
    for folder, value in ((run, 3.0), (run / "ema", 2.0)):
        folder.mkdir()
        save_file({"w": torch.full((2,), value)}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps({"r": 11, "from": folder.name}))
    (run / "training.png").write_bytes(b"png")
    (run / "train_results.json").write_text(json.dumps({"train_runtime": 34.5}))  # the last part only
    (run / "training_clock.json").write_text(json.dumps({"seconds": 1234.4, "step": 20, "parts": 1}))

    def check(step, wer):
        return [{"step": step, "loss": 3.0}, {"step": step, "eval_wer": wer, "eval_loss_own_audio": 1.23456}]

    for step, history in ((10, check(10, 0.99)), (20, check(10, 0.9) + check(20, 0.5))):  # the last one is read
        (run / f"checkpoint-{step}").mkdir()
        state = {"global_step": step, "log_history": history}
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    return base, trained, run


def _stub_scoring(monkeypatch, greedy: dict, beams: float):
    """validation_scores / whisper_base / listening_check without models: `greedy` WER by candidate."""
    rows = [{"voice": "rhvoice-bdl", "text": "one two", "samples": None},
            {"voice": "allison", "text": "three", "samples": None}]
    monkeypatch.setattr(demo, "load_clips", lambda manifest: rows)

    def scores(pieces, rows, num_beams=1):
        wer = {name: beams if num_beams > 1 else greedy[name] for name in pieces}
        return {name: {"wer": w, "cer": w / 2, "by_source": {}, "transcripts": ["one two", "three"]}
                for name, w in wer.items()}  # fmt: skip

    monkeypatch.setattr(demo, "validation_scores", scores)
    monkeypatch.setattr(demo, "whisper_base", lambda rows, num_beams=1: ["one two", "free"])
    monkeypatch.setattr(demo, "listening_check", lambda pieces, rows: {"own": 1.0, "zeroed": 5.0, "own_over_zeroed": 0.2})


def test_keep_chooses_on_validation_and_copies_the_choice_in_bf16(tmp_path, monkeypatch, capsys):
    import torch
    from safetensors.torch import load_file

    base, trained, run = _keep_folders(tmp_path, monkeypatch)
    (trained / "stage1").mkdir(parents=True)  # pieces of an older recipe are replaced, not kept beside
    _stub_scoring(monkeypatch, {"end": 0.30, "ema": 0.25}, beams=0.20)
    recipe = demo.keep(run, tmp_path / "validation.jsonl", corpus=tmp_path / "corpus")  # none made yet
    saved = load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"]
    assert saved.dtype == torch.bfloat16 and saved.tolist() == [2.0, 2.0]  # the EMA: the lower validation WER
    assert json.loads((trained / "stage2" / "adapter_config.json").read_text())["from"] == "ema"
    assert sorted(p.name for p in trained.iterdir()) == ["generation_config.json", "recipe.json", "stage2"]
    assert json.loads((trained / "generation_config.json").read_text()) == {"num_beams": 4}  # beams beat greedy
    assert (trained / "stage2" / "training.png").read_bytes() == b"png"
    assert json.loads((trained / "recipe.json").read_text()) == recipe
    assert {k: recipe[k] for k in ("audio_downsample", "encode_padding", "steps", "training_seconds", "training_parts",
                                   "corpus", "kept", "num_beams")} == {
        "audio_downsample": 4, "encode_padding": False, "steps": 20, "training_seconds": 1234, "training_parts": 1,
        "corpus": None, "kept": "ema", "num_beams": 4}  # fmt: skip
    assert "wall_seconds" not in recipe
    assert recipe["validation"]["greedy_wer"] == {"end": 0.3, "ema": 0.25}
    assert recipe["validation"]["by_source"]["allison"] == {"clips": 1, "graft_wer": 0.0, "whisper_base_wer": 1.0}
    assert recipe["evaluations"] == [{"step": 10, "eval_loss_own_audio": 1.2346, "eval_wer": 0.9},
                                     {"step": 20, "eval_loss_own_audio": 1.2346, "eval_wer": 0.5}]  # fmt: skip
    assert set(recipe["hardware"]) == {"cpu", "cores", "cpu_bf16", "cpu_flags", "torch", "transformers"}

    _stub_scoring(monkeypatch, {"end": 0.25, "ema": 0.25}, beams=0.26)  # a tie keeps the end; greedy beats beams
    recipe = demo.keep(run, tmp_path / "validation.jsonl", corpus=tmp_path / "corpus")
    assert (recipe["kept"], recipe["num_beams"]) == ("end", 1)
    assert json.loads((trained / "generation_config.json").read_text()) == {"num_beams": 1}

    # a stage 1 run gave the projector: both stages' seconds and parts count; the corpus's making apart
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    (stage1 / "training_clock.json").write_text(json.dumps({"seconds": 600.2, "step": 1500, "parts": 2}))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "stats.json").write_text(json.dumps({"generation_seconds": 61.2, "making_seconds": 1290.5, "making_runs": 2,
                                                   "reused_clips": 7, "train": {}}))
    recipe = demo.keep(run, tmp_path / "validation.jsonl", stage1=stage1, corpus=corpus)
    assert (recipe["training_seconds"], recipe["training_parts"]) == (1835, 3)
    assert recipe["corpus"] == {"seconds": 1290.5, "runs": 2, "reused_clips": 7, "extra_text": None}
    (corpus / "stats.json").write_text(json.dumps({"making_seconds": 1838.7, "making_runs": 1, "reused_clips": 0,
                                                   "extra_text": "wordnet", "extra_sentences": 17058}))
    recipe = demo.keep(run, tmp_path / "validation.jsonl", stage1=stage1, corpus=corpus)
    assert recipe["corpus"] == {"seconds": 1838.7, "runs": 1, "reused_clips": 0, "extra_text": "wordnet"}
    (stage1 / "training_clock.json").unlink()  # a run whose seconds are unknown leaves the sum unknown
    (stage1 / "train_results.json").write_text(json.dumps({}))
    assert demo.keep(run, tmp_path / "validation.jsonl", stage1=stage1)["training_seconds"] is None


def test_spread_scores_each_seed_on_validation_as_keep_does(tmp_path, monkeypatch, capsys):
    import shutil

    _, _, run = _keep_folders(tmp_path, monkeypatch)
    other = tmp_path / "seed1"
    shutil.copytree(run, other)
    greedy = {run: {"end": 0.30, "ema": 0.25}, other: {"end": 0.20, "ema": 0.22}}
    _stub_scoring(monkeypatch, {}, beams=0.0)
    monkeypatch.setattr(demo, "validation_scores", lambda pieces, rows, num_beams=1: {
        name: {"wer": greedy[folder if name == "end" else folder.parent][name]} for name, folder in pieces.items()})
    result = demo.spread([run, other], tmp_path / "validation.jsonl", tmp_path / "spread.json")
    assert result == json.loads((tmp_path / "spread.json").read_text())
    assert result["runs"] == {str(run): {"greedy_wer": {"end": 0.3, "ema": 0.25}, "kept": "ema", "wer": 0.25},
                              str(other): {"greedy_wer": {"end": 0.2, "ema": 0.22}, "kept": "end", "wer": 0.2}}
    assert (result["clips"], result["words"], result["spread_points"], result["spread_words"]) == (2, 3, 5.0, 0)
    with pytest.raises(SystemExit):
        demo.main(["spread", "--runs", str(run)])
    assert capsys.readouterr().err.endswith("error: spread needs at least two --runs\n")
    # the kept run's scores as keep recorded them, not scored again
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"validation": {"clips": 2, "greedy_wer": {"end": 0.1465, "ema": 0.148}}}))
    result = demo.spread([recipe, other], tmp_path / "validation.jsonl", tmp_path / "spread.json")
    assert result["runs"][str(recipe)] == {"greedy_wer": {"end": 0.1465, "ema": 0.148}, "kept": "end", "wer": 0.1465}
    assert (result["spread_points"], result["spread_words"]) == (5.35, 0)
    recipe.write_text(json.dumps({"validation": {"clips": 165, "greedy_wer": {"end": 0.1465}}}))
    with pytest.raises(ValueError) as info:
        demo.spread([recipe, other], tmp_path / "validation.jsonl", tmp_path / "spread.json")
    assert str(info.value) == (f"{recipe} records no greedy validation WER of 2 clips: "
                               "expected the recipe.json that mini.demo keep writes")  # fmt: skip


def test_keep_refuses_a_folder_without_an_adapter(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        demo.candidates(tmp_path)
    assert str(info.value) == f"{tmp_path} holds no adapter: expected a finished stage-2 run (adapter_config.json)"


def test_decoding_settings_go_over_the_generation_config(tmp_path):
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=[5, 6])
    assert demo.apply_decoding(config, tmp_path).num_beams == 1  # no file: as it was
    (tmp_path / "generation_config.json").write_text('{"num_beams": 4}')
    assert demo.apply_decoding(config, tmp_path).to_diff_dict() == GenerationConfig(
        do_sample=False, num_beams=4, eos_token_id=[5, 6]).to_diff_dict()  # fmt: skip
    (tmp_path / "generation_config.json").write_text('{"num_beam": 4}')
    with pytest.raises(ValueError) as info:
        demo.apply_decoding(config, tmp_path)
    assert str(info.value) == f"{tmp_path / 'generation_config.json'}: not generation settings: ['num_beam']"


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

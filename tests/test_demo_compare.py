"""mini.demo: compare (pipeline transcripts against a train.evaluate run) and the pieces kept in bf16."""

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


def test_keep_takes_stage2_from_the_folder_named_and_records_the_recipe(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    base, trained, train = tmp_path / "base", tmp_path / "trained", tmp_path / "mini-train"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"audio_downsample": 4, "projector_type": "linear",
                                                  "projector_norm": True, "encode_padding": False}))  # fmt: skip
    monkeypatch.setattr(demo, "BASE", base)
    monkeypatch.setattr(demo, "TRAINED", trained)
    for folder, value in ((train / "stage1", 1.0), (train / "stage2", 2.0), (tmp_path / "more", 3.0)):
        folder.mkdir(parents=True)
        name = "model.safetensors" if folder.name == "stage1" else "adapter_model.safetensors"
        save_file({"w": torch.full((2,), value)}, str(folder / name))
        (folder / "training.png").write_bytes(b"png" + folder.name.encode())
        (folder / "adapter_config.json").write_text("{}")
    demo.keep(train, note="n", stage2=tmp_path / "more")
    assert load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"].tolist() == [3.0, 3.0]
    assert load_file(str(trained / "stage1" / "model.safetensors"))["w"].dtype == torch.bfloat16
    assert (trained / "stage2" / "training.png").read_bytes() == b"pngmore"
    assert json.loads((trained / "recipe.json").read_text()) == {"audio_downsample": 4, "projector_type": "linear",
                                                                 "projector_norm": True, "encode_padding": False, "note": "n"}  # fmt: skip
    demo.keep(train, note="n")
    assert load_file(str(trained / "stage2" / "adapter_model.safetensors"))["w"].tolist() == [2.0, 2.0]

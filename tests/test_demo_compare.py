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

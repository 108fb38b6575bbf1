"""mini.demo compare: the demo's pipeline transcripts against a train.evaluate run."""

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

"""The command-line transcriber: files and folders in, .txt/.srt/.vtt/.json out, in Whisper's formats."""

import json
import re

import numpy as np
import pytest
import soundfile

from tests.test_segments import sounds_and_pauses
from train import transcribe

SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n")
VTT_CUE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.+)\n")


def seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def test_timestamps_in_srt_and_vtt_notation():
    assert transcribe.timestamp(3725.0456, ",") == "01:02:05,046"
    assert transcribe.timestamp(0.0, ".") == "00:00:00.000"
    chunks = [{"text": "Hello there.", "timestamp": (0.5, 1.25)}, {"text": "Bye.", "timestamp": (61.0, 62.5)}]
    assert transcribe.to_srt(chunks) == ("1\n00:00:00,500 --> 00:00:01,250\nHello there.\n\n"
                                         "2\n00:01:01,000 --> 00:01:02,500\nBye.\n")  # fmt: skip
    assert transcribe.to_vtt(chunks) == ("WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nHello there.\n\n"
                                         "00:01:01.000 --> 00:01:02.500\nBye.\n")  # fmt: skip


def test_files_and_folders_are_transcribed_into_every_format(tiny_dir, tmp_path, capsys):
    audio, spans = sounds_and_pauses([(0.3, False), (1.0, True), (0.6, False), (1.5, True), (0.4, False)])
    folder = tmp_path / "in"
    (folder / "more").mkdir(parents=True)
    soundfile.write(folder / "talk.wav", audio, 16000)
    soundfile.write(folder / "more" / "short.flac", audio[: 16000 * 2], 16000)
    (folder / "notes.txt").write_text("not audio")  # not an audio suffix: not picked up
    out = tmp_path / "out"
    code = transcribe.main([str(tiny_dir), str(folder), "--output_dir", str(out), "--batch_size", "3",
                            "--max_new_tokens", "3", "--max_segment_seconds", "2", "--no_progress"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.{fmt}" for stem in ("short", "talk")
                                                          for fmt in ("txt", "srt", "vtt", "json"))  # fmt: skip
    result = json.loads((out / "talk.json").read_text())
    assert [len(c["timestamp"]) for c in result["chunks"]] == [2, 2]
    for chunk, (start, end) in zip(result["chunks"], spans):
        assert abs(chunk["timestamp"][0] - start) <= 0.1 and abs(chunk["timestamp"][1] - end) <= 0.1
    assert (out / "talk.txt").read_text() == result["text"] + "\n"
    srt = (out / "talk.srt").read_text()
    cues = SRT_CUE.findall(srt)
    assert "\n".join(f"{i}\n{a} --> {b}\n{t}\n" for i, a, b, t in cues) == srt  # nothing outside the cues
    assert [int(i) for i, *_ in cues] == [1, 2]
    assert [(seconds(a), seconds(b)) for _, a, b, _ in cues] == [tuple(c["timestamp"]) for c in result["chunks"]]
    vtt = (out / "talk.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert [(seconds(a), seconds(b), t) for a, b, t in VTT_CUE.findall(vtt)] == [
        (c["timestamp"][0], c["timestamp"][1], c["text"]) for c in result["chunks"]]  # fmt: skip
    assert "2 recording(s)" in capsys.readouterr().err


def test_bad_inputs_are_named(tiny_dir, tmp_path, capsys):
    assert transcribe.main([str(tiny_dir), str(tmp_path / "missing.wav")]) == 2
    assert capsys.readouterr().err == f"error: No audio file or folder at {tmp_path / 'missing.wav'}\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        soundfile.write(tmp_path / sub / "x.wav", np.zeros(1600, dtype=np.float32), 16000)
    assert transcribe.main([str(tiny_dir), str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'a' / 'x.wav'} and {tmp_path / 'b' / 'x.wav'} would write the "
                                       "same x.* outputs: transcribe them into different --output_dir folders\n")  # fmt: skip
    (tmp_path / "empty").mkdir()
    assert transcribe.main([str(tiny_dir), str(tmp_path / "empty")]) == 2
    assert "No audio files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        transcribe.main([str(tiny_dir), str(tmp_path / "a"), "--batch_size", "0"])

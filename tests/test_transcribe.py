"""The command-line transcriber: files and folders in, .txt/.srt/.vtt/.json out, in Whisper's formats."""

import json
import re

import numpy as np
import pytest
import soundfile
import transformers

from tests.conftest import non_text_tokens
from tests.test_audio_files import bad_files, encode
from tests.test_segments import espeak_sentences, sounds_and_pauses
from tests.test_speech_detector import SENTENCES
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
    # noise bursts stand in for speech here: the energy rule takes them for speech, Silero VAD does not
    code = transcribe.main([str(tiny_dir), str(folder), "--output_dir", str(out), "--batch_size", "3", "--max_new_tokens",
                            "3", "--max_segment_seconds", "2", "--speech_detector", "energy", "--no_progress"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.{fmt}" for stem in ("short", "talk")
                                                          for fmt in ("txt", "srt", "vtt", "json"))  # fmt: skip
    result = json.loads((out / "talk.json").read_text())
    assert set(result) == {"text", "chunks", "speech_detector"} and result["speech_detector"] == "energy"
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
    err = capsys.readouterr().err
    assert "2 recording(s)" in err and err.endswith("2 written, 0 failed, 0 skipped\n")


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


def own_lines(err: str) -> list[str]:
    """The transcriber's lines of `err`, without transformers' bar for loading the weights."""
    return [line for line in err.split("\n") if line and "Loading weights" not in line]


def test_a_folder_of_good_and_bad_files(tiny_dir, tmp_path, capsys, monkeypatch):
    """Speech in four containers, silence and white noise are transcribed (the last two to no words); each file
    without audio is one line naming it; a rerun skips what is done; the exit status says something failed."""
    real_pipeline = transformers.pipeline

    def writing_text(*args, **kwargs):  # the random tiny graft, set to write 3 tokens of text wherever it is asked
        asr = real_pipeline(*args, **kwargs)
        asr.model.generation_config.update(min_new_tokens=3, suppress_tokens=non_text_tokens(asr.model, asr.processor))
        return asr

    monkeypatch.setattr(transformers, "pipeline", writing_text)
    speech, _ = espeak_sentences(tmp_path, SENTENCES[:2])
    folder = tmp_path / "in"
    bad = bad_files(folder)
    soundfile.write(folder / "talk.wav", speech, 16000)
    soundfile.write(folder / "talk-flac.flac", speech, 16000)
    encode(folder / "phone.m4a", speech, 16000, "aac", "ipod")
    encode(folder / "video.mp4", speech, 16000, "aac", "mp4", video=True)
    soundfile.write(folder / "silence.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    soundfile.write(folder / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(5 * 16000), 16000)
    out = tmp_path / "out"
    run = [str(tiny_dir), str(folder), "--output_dir", str(out), "--max_new_tokens", "3", "--formats", "txt", "json",
           "--no_progress"]  # fmt: skip
    assert transcribe.main(run) == 1
    streams = capsys.readouterr()
    lines = own_lines(streams.err)
    assert lines[0] == f"10 recording(s) to {out}: txt, json"
    assert sorted(lines[1:-1]) == sorted(f"{path}: {reason}" for path, reason in bad)  # one line each, no traceback
    assert lines[-1] == "6 written, 4 failed, 0 skipped"
    good = ("noise", "phone", "silence", "talk", "talk-flac", "video")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.{fmt}" for stem in good for fmt in ("txt", "json"))
    results = {stem: json.loads((out / f"{stem}.json").read_text()) for stem in good}
    assert all(r["speech_detector"] == "silero" for r in results.values())
    assert results["silence"] == results["noise"] == {"text": "", "chunks": [], "speech_detector": "silero"}
    for stem in ("talk", "talk-flac", "phone", "video"):  # the sentences, found in every container
        assert len(results[stem]["chunks"]) == 1 and len(results[stem]["text"]) > 0, stem
        assert results[stem]["chunks"][0]["timestamp"][0] == pytest.approx(0.7, abs=0.1)  # the first pause is 0.7 s
    assert [c["timestamp"] for c in results["talk-flac"]["chunks"]] == [c["timestamp"] for c in results["talk"]["chunks"]]
    # a rerun goes on where the last one stopped: the written files are skipped, the bad ones named again
    (out / "talk.json").unlink()
    assert transcribe.main(run) == 1
    lines = own_lines(capsys.readouterr().err)
    assert lines[0] == f"10 recording(s) to {out}: txt, json; 5 done already, skipped (--overwrite redoes them)"
    assert lines[-1] == "1 written, 4 failed, 5 skipped"
    assert json.loads((out / "talk.json").read_text()) == results["talk"]
    assert transcribe.main(run + ["--overwrite"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "6 written, 4 failed, 0 skipped"
    # a folder of good files only exits 0
    for path, _ in bad:
        path.unlink()
    assert transcribe.main(run) == 0
    assert capsys.readouterr().err.splitlines()[-1] == "0 written, 0 failed, 6 skipped"

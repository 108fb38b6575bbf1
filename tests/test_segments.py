"""Long recordings: the segmenter (`split_at_pauses`) and the pipeline's segmented path, timestamps and errors."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile
from transformers import pipeline

from tests.conftest import non_text_tokens
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt, split_at_pauses
from qwen2_audio_graft.pipeline_qwen2_audio_graft import frame_energy, pauses_within, sentence_chunks, speech_frames

RATE = 16000


def sounds_and_pauses(pieces):
    """A recording of noise bursts and silences: `pieces` is a list of (seconds, is_sound); returns the
    samples and the (start, end) seconds of each sound."""
    rng = np.random.RandomState(0)
    audio, spans, at = [], [], 0.0
    for seconds, is_sound in pieces:
        n = int(round(seconds * RATE))
        audio.append((0.2 * rng.randn(n)).astype(np.float32) if is_sound else np.zeros(n, dtype=np.float32))
        if is_sound:
            spans.append((at, at + seconds))
        at += seconds
    return np.concatenate(audio), spans


def seconds(segments):
    return [(a / RATE, b / RATE) for a, b in segments]


def test_segments_fall_on_the_silences():
    audio, spans = sounds_and_pauses([(0.5, False), (2.0, True), (0.6, False), (3.0, True), (1.0, False),
                                      (1.5, True), (0.5, False), (2.5, True), (0.5, False)])  # fmt: skip
    found = seconds(split_at_pauses(audio, max_segment_seconds=3.5))
    assert len(found) == len(spans)
    for (a, b), (start, end) in zip(found, spans):
        assert abs(a - start) <= 0.1 and abs(b - end) <= 0.1
    assert all(b - a <= 3.5 for a, b in found) and [a for a, _ in found] == sorted(a for a, _ in found)
    # with room for two sounds, neighbours are joined across their pause
    joined = seconds(split_at_pauses(audio, max_segment_seconds=6.0))
    assert [(round(a, 2), round(b, 2)) for a, b in joined] == [(0.45, 6.15), (7.05, 11.65)]
    # the frame energy and speech flags a caller computed already are used as given
    energy, speech = frame_energy(audio), speech_frames(audio)
    assert seconds(split_at_pauses(audio, 6.0, energy=energy, speech=speech)) == joined
    speech[: int(6.5 * 100)] = False
    later = seconds(split_at_pauses(audio, 6.0, energy=energy, speech=speech))
    assert [(round(a, 2), round(b, 2)) for a, b in later] == [(7.05, 11.65)]


def test_speech_without_a_pause_is_cut_where_it_is_quietest():
    t = np.arange(12 * RATE) / RATE
    envelope = 0.3 + 0.25 * np.cos(2 * np.pi * t / 4.0)  # quietest at 2, 6 and 10 s, never silent
    audio = (envelope * np.random.RandomState(1).randn(t.size)).astype(np.float32)
    found = seconds(split_at_pauses(audio, max_segment_seconds=5.0))
    assert all(b - a <= 5.0 for a, b in found) and found[0][0] == 0.0 and found[-1][1] == 12.0
    assert len(found) == 4 and all(abs(b - cut) <= 0.1 for (_, b), cut in zip(found, (2, 6, 10)))


def test_silence_clicks_and_empty_audio_give_no_segment():
    assert split_at_pauses(np.zeros(3 * RATE, dtype=np.float32)) == []
    assert split_at_pauses(np.zeros(0, dtype=np.float32)) == []
    click, _ = sounds_and_pauses([(1.0, False), (0.05, True), (1.0, False)])
    assert split_at_pauses(click) == []
    with pytest.raises(ValueError) as info:
        split_at_pauses(click, max_segment_seconds=31)
    assert str(info.value) == "max_segment_seconds must be above 0 and at most 30 (one Whisper window), got 31"


def espeak_sentences(tmp_path, texts_and_pauses):
    """espeak-ng (installed by make test) reads each text, trimmed to its first and last sound, after its
    pause in seconds; returns the 16 kHz samples and the (start, end) seconds of each sentence."""
    assert shutil.which("espeak-ng"), "espeak-ng is installed by make test (apt-get install espeak-ng)"
    pieces, spans, at = [], [], 0.0
    for text, gap in texts_and_pauses:
        wav = tmp_path / f"{len(pieces)}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
        speech, rate = soundfile.read(wav, dtype="float32")
        speech = np.interp(np.arange(0, len(speech), rate / RATE), np.arange(len(speech)), speech).astype(np.float32)
        loud = np.flatnonzero(np.abs(speech) > 0.01)
        speech = speech[loud[0]:loud[-1] + 1]
        pieces += [np.zeros(int(gap * RATE), dtype=np.float32), speech]
        spans.append((at + gap, at + gap + len(speech) / RATE))
        at += gap + len(speech) / RATE
    return np.concatenate(pieces), spans


def test_spoken_sentences_are_found_between_their_pauses(tmp_path):
    """espeak-ng (installed by make test) reads three sentences; they are joined with known pauses."""
    audio, spans = espeak_sentences(tmp_path, [("The cat sat on the mat.", 0.7),
                                               ("Then it went to sleep by the fire.", 1.0), ("Nobody woke it up.", 0.5)])
    found = seconds(split_at_pauses(audio, max_segment_seconds=3.0))
    assert len(found) == 3
    assert all(abs(a - start) <= 0.1 for (a, _), (start, _) in zip(found, spans))


def test_sentences_of_a_segment_are_timed_by_its_pauses(tmp_path):
    """One segment holding three espeak-ng sentences: their pauses time each sentence of the text."""
    texts = ("The cat sat on the mat.", "Then it went to sleep by the fire, warm and quiet.", "Nobody woke it up.")
    audio, spans = espeak_sentences(tmp_path, list(zip(texts, (0.5, 0.4, 0.8))))
    audio = np.concatenate([audio, np.zeros(RATE // 2, dtype=np.float32)])
    (start, end), = split_at_pauses(audio, max_segment_seconds=30.0)
    pauses = pauses_within(speech_frames(audio), start // 160, end // 160)
    chunks = sentence_chunks(" ".join(texts), (start / RATE, end / RATE), pauses)
    assert [c["text"] for c in chunks] == list(texts)
    for chunk, (a, b) in zip(chunks, spans):
        assert abs(chunk["timestamp"][0] - a) <= 0.1 and abs(chunk["timestamp"][1] - b) <= 0.1


def test_sentence_times_without_pauses_and_without_sentence_ends():
    # read back to back: the end falls where the characters put it
    assert sentence_chunks("One two three. Four five six.", (1.0, 7.0), []) == [
        {"text": "One two three.", "timestamp": (1.0, 4.0)}, {"text": "Four five six.", "timestamp": (4.0, 7.0)}]
    # the longer pause near the expected end wins over a short one nearer
    assert sentence_chunks("One two three. Four five six.", (1.0, 7.0), [(3.8, 3.9), (4.5, 5.2)]) == [
        {"text": "One two three.", "timestamp": (1.0, 4.5)}, {"text": "Four five six.", "timestamp": (5.2, 7.0)}]
    assert sentence_chunks("no sentence end ", (2.0, 3.5), [(2.5, 3.0)]) == [
        {"text": "no sentence end", "timestamp": (2.0, 3.5)}]
    # "Mr. Smith." is two sentences to the splitter; with one pause only one end gets it
    chunks = sentence_chunks("Hello there. Mr. Smith came.", (0.0, 6.0), [(2.0, 2.6)])
    assert [c["timestamp"] for c in chunks] == [(0.0, 2.0), (2.6, 3.52), (3.52, 6.0)]


@pytest.fixture(scope="module")
def asr(tiny_dir):
    # tones and noise bursts stand in for speech here: the energy rule takes them for speech, Silero VAD does not
    return pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True, speech_detector="energy")


def words(asr, n=2):
    return {"max_new_tokens": n, "min_new_tokens": n, "suppress_tokens": non_text_tokens(asr.model, asr.processor)}


def test_timestamps_in_whispers_shape_and_the_same_at_every_batch_size(asr):
    audio, spans = sounds_and_pauses([(0.3, False), (1.0, True), (0.5, False), (2.0, True), (0.5, False), (1.2, True)])
    other, _ = sounds_and_pauses([(0.4, False), (1.5, True), (0.6, False), (1.0, True)])
    results = {b: asr([audio, other], batch_size=b, return_timestamps=True, max_segment_seconds=2.5,
                      generate_kwargs=words(asr)) for b in (1, 2, 8)}  # fmt: skip
    assert results[1] == results[2] == results[8]
    first = results[1][0]
    assert set(first) == {"text", "chunks"} and len(first["chunks"]) == 3
    assert first["text"] == " ".join(c["text"] for c in first["chunks"]) != ""
    for chunk, (start, end) in zip(first["chunks"], spans):
        assert set(chunk) == {"text", "timestamp"} and isinstance(chunk["timestamp"], tuple)
        assert abs(chunk["timestamp"][0] - start) <= 0.1 and abs(chunk["timestamp"][1] - end) <= 0.1
    plain = asr(audio, max_segment_seconds=2.5, segment_audio=True, generate_kwargs=words(asr))
    assert plain == {"text": first["text"]}


def test_a_ten_minute_recording_runs_in_segments(asr):
    block, _ = sounds_and_pauses([(9.0, True), (1.0, False)])
    recording = np.tile(block, 60)  # 600 s
    out = asr(recording, return_timestamps=True, batch_size=8, generate_kwargs=words(asr, 1))
    assert len(out["chunks"]) == 60  # one 9 s sound a 10 s segment
    assert out["chunks"][-1]["timestamp"][1] == pytest.approx(599.05, abs=0.06)


def test_whole_recording_prompt_and_other_instructions(asr):
    audio, _ = sounds_and_pauses([(0.5, False), (12.0, True), (1.0, False), (12.0, True)])  # 25.5 s
    whole = asr(audio, segment_audio=False, generate_kwargs=words(asr))
    inputs = asr.processor(text=build_prompt(asr.processor), audio=audio, sampling_rate=RATE)
    out = asr.model.generate(**inputs, do_sample=False, **words(asr))
    assert whole["text"] == asr.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    # over max_segment_seconds, transcription goes in segments by default; another instruction gets the whole
    assert asr(audio, generate_kwargs=words(asr)) == asr(audio, segment_audio=True, generate_kwargs=words(asr))
    summary = asr(audio, prompt="Summarise this.", generate_kwargs=words(asr))
    assert summary == asr(audio, prompt="Summarise this.", segment_audio=False, generate_kwargs=words(asr))
    on_segments = asr(audio, prompt="Summarise this.", return_timestamps=True, max_segment_seconds=20.0,
                      generate_kwargs=words(asr))  # fmt: skip
    assert len(on_segments["chunks"]) == 2
    # max_audio_seconds bounds the whole-recording prompt only
    long = np.tile(audio, 5)  # 127.5 s
    with pytest.raises(ValueError) as info:
        asr(long, segment_audio=False)
    assert str(info.value) == "audio clip 0 is 127.5 s long; the longest accepted is 120 s (max_audio_seconds)"
    # the 12 s sounds have no pause: cut at their quietest, pieces joined again while they fit 10 s; each
    # chunk is one segment (one whose single token decodes to nothing gives no chunk)
    spans = [(round(a, 2), round(b, 2)) for a, b in seconds(split_at_pauses(long))]
    assert len(spans) == 16 and all(b - a <= 10.0 for a, b in spans)
    chunks = asr(long, return_timestamps=True, generate_kwargs=words(asr, 1))["chunks"]
    assert len(chunks) >= 10 and all(chunk["timestamp"] in spans for chunk in chunks)


def test_no_speech_gives_empty_text_and_no_chunks(asr, monkeypatch):
    calls = []
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: calls.append(kwargs))
    click, _ = sounds_and_pauses([(1.0, False), (0.05, True), (1.0, False)])
    for audio in (np.zeros(3 * RATE, dtype=np.float32), click, np.zeros(40 * RATE, dtype=np.float32)):
        assert asr(audio) == {"text": ""}
        assert asr(audio, return_timestamps=True) == {"text": "", "chunks": []}
    assert asr([click, np.zeros(RATE, dtype=np.float32)], batch_size=2) == [{"text": ""}, {"text": ""}]
    assert calls == []  # the model was never asked to make words of silence


def test_bad_long_form_arguments_and_files(asr, tmp_path):
    clip = np.zeros(RATE, dtype=np.float32)
    cases = [
        ({"return_timestamps": "word"}, "return_timestamps must be True or False (sentence timestamps; word timestamps "
                                        "are not supported), got 'word'"),
        ({"segment_audio": "yes"}, 'segment_audio must be "auto", True or False, got \'yes\''),
        ({"return_timestamps": True, "segment_audio": False}, "return_timestamps=True needs segments: segment_audio=False "
                                                              "puts the whole recording in one prompt, which has no timestamps"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            asr(clip, **kwargs)
        assert str(info.value) == message
    with pytest.raises(FileNotFoundError) as info:
        asr(str(tmp_path / "missing.wav"))
    assert str(info.value) == f"{tmp_path / 'missing.wav'}: no such file"
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(ValueError) as info:
        asr(str(tmp_path / "notes.wav"))
    assert str(info.value) == f"{tmp_path / 'notes.wav'}: not audio FFmpeg can decode (Invalid data found when processing input)"

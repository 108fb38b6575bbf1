"""What finds speech: Silero VAD (silero-vad, installed by the lock file) and the frame-energy rule it replaces.
Noise, tones and silence hold no speech; espeak-ng sentences do, clean and under noise."""

import sys

import numpy as np
import pytest
from transformers import pipeline

from mini.longform import non_speech
from qwen2_audio_graft.pipeline_qwen2_audio_graft import (frame_energy, resolve_speech_detector, silero_speech_frames,
                                                          speech_frames, split_at_pauses)  # fmt: skip
from tests.conftest import non_text_tokens
from tests.test_segments import espeak_sentences, seconds

RATE = 16000
SENTENCES = [("The cat sat on the mat.", 0.7), ("Then it went to sleep by the fire.", 1.0), ("Nobody woke it up.", 0.5)]


def silero_segments(audio, max_segment_seconds=3.0):
    return seconds(split_at_pauses(audio, max_segment_seconds, energy=frame_energy(audio), speech=silero_speech_frames(audio)))


def test_noise_tones_and_silence_hold_no_speech_for_silero():
    sounds = non_speech(seconds=5.0)
    assert sorted(sounds) == ["pink noise", "silence", "tones", "white noise"]
    for name, sound in sounds.items():
        assert silero_speech_frames(sound).sum() == 0, name
        assert silero_segments(sound) == [], name
    # the energy rule takes steady sound for speech: the whole of it
    for name in ("white noise", "pink noise", "tones"):
        assert speech_frames(sounds[name]).mean() > 0.9, name


def test_silero_finds_each_sentence_clean_and_under_noise(tmp_path):
    audio, spans = espeak_sentences(tmp_path, SENTENCES)
    audio = np.concatenate([audio, np.zeros(RATE // 2, dtype=np.float32)])
    speech = np.concatenate([audio[int(a * RATE) : int(b * RATE)] for a, b in spans])
    noise = np.random.default_rng(0).standard_normal(len(audio)) * np.sqrt(np.mean(np.square(speech))) / 10 ** (10 / 20)
    for recording in (audio, (audio + noise).astype(np.float32)):  # clean, and white noise at 10 dB SNR
        found = silero_segments(recording)
        assert len(found) == 3
        for (a, b), (start, end) in zip(found, spans):
            assert abs(a - start) <= 0.1 and abs(b - end) <= 0.2  # an end waits for 0.1 s of silence


@pytest.fixture(scope="module")
def asr(tiny_dir):
    return pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True)


def test_the_pipeline_writes_no_words_for_noise(asr, monkeypatch):
    calls = []
    generate = asr.model.generate
    monkeypatch.setattr(asr.model, "generate", lambda **kwargs: calls.append(kwargs) or generate(**kwargs))
    sounds = non_speech(seconds=5.0)
    for sound in sounds.values():
        assert asr(sound) == {"text": ""}
        assert asr(sound, return_timestamps=True) == {"text": "", "chunks": []}
    assert calls == []  # Silero VAD (the default where installed) found no speech: the model was not asked
    asr(sounds["white noise"], speech_detector="energy", max_new_tokens=2)
    assert len(calls) == 1  # the energy rule sends noise to the model, which then makes words of it


def test_which_detector_runs(asr, tiny_dir, monkeypatch):
    assert resolve_speech_detector() == resolve_speech_detector("silero") == "silero"
    assert resolve_speech_detector("energy") == "energy"
    with pytest.raises(ValueError) as info:
        asr(np.zeros(RATE, dtype=np.float32), speech_detector="webrtc")
    assert str(info.value) == "speech_detector must be \"auto\", \"silero\" or \"energy\", got 'webrtc'"
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # as where silero-vad is not installed
    assert resolve_speech_detector() == asr.resolve_speech_detector("auto") == "energy"
    for call in (lambda: resolve_speech_detector("silero"), lambda: asr(np.zeros(RATE, np.float32), speech_detector="silero")):
        with pytest.raises(ImportError) as info:
            call()
        assert str(info.value) == 'speech_detector="silero" needs Silero VAD: pip install silero-vad'
    fallback = pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True)
    words = {"max_new_tokens": 2, "min_new_tokens": 2, "suppress_tokens": non_text_tokens(fallback.model, fallback.processor)}
    assert fallback(non_speech(seconds=5.0)["white noise"], generate_kwargs=words)["text"] != ""  # the energy rule ran


def test_silero_leaves_torch_its_threads():
    # silero_vad's import sets torch.set_num_threads(1) for the process; in a fresh process, where the
    # import really runs, the pipeline's detector must hand torch its thread count back.
    import subprocess

    code = ("import numpy, torch; torch.set_num_threads(2); "
            "from qwen2_audio_graft.pipeline_qwen2_audio_graft import silero_speech_frames; "
            "silero_speech_frames(numpy.zeros(16000, numpy.float32)); import silero_vad; print(torch.get_num_threads())")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "2"

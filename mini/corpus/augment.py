"""Corpus audio: conversion to 16 kHz mono with sox, added noise and level, checks of a finished clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from mini.corpus.clip import ClipJob
from mini.corpus.tools import ClipError, run_tool
from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE

SAMPLE_RATE = SAMPLING_RATE  # the graft's rate
# A TTS clip shorter than this per word means the engine skipped text.
MIN_SECONDS_PER_WORD = 0.1
# Whisper-style encoders see at most 30 s.
MAX_CLIP_SECONDS = 30.0


def sox_to_16k(src: Path, dst: Path, tempo: float = 1.0, raw_input: bool = False,
               pitch_cents: int = 0, reverb: int = 0) -> None:
    """Convert to 16 kHz mono 16-bit PCM; -D (no dither) keeps reruns byte-identical."""
    src_opts = ["-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed-integer", "-b", "16", "-c", "1",
                "-L"] if raw_input else []
    effects = ["tempo", "-s", f"{tempo:.3f}"] if abs(tempo - 1.0) > 1e-6 else []
    effects += ["pitch", str(pitch_cents)] if pitch_cents else []
    effects += ["reverb", str(reverb)] if reverb else []
    run_tool(["sox", "-D", "-G", *src_opts, str(src), "-r", str(SAMPLE_RATE), "-c", "1",
              "-b", "16", "-e", "signed-integer", str(dst), *effects], "sox")


def active_rms(audio: np.ndarray, frame: int = 400) -> float:
    """RMS over frames within 35 dB of the loudest, so leading silence does not set SNR."""
    n = len(audio) // frame
    if n == 0:
        return float(np.sqrt(np.mean(audio ** 2)) + 1e-12)
    power = np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1)
    return float(np.sqrt(np.mean(power[power >= power.max() * 10 ** -3.5])) + 1e-12)


def make_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(length)
    if kind == "white":
        return white
    if kind == "pink":  # 1/f power: scale the spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(white)
        freqs = np.arange(len(spectrum), dtype=float)
        freqs[0] = 1.0
        return np.fft.irfft(spectrum / np.sqrt(freqs), n=length)
    raise ValueError(f"expected noise kind white or pink, got {kind!r}")


def augment(audio: np.ndarray, job: ClipJob) -> np.ndarray:
    """Add noise at the job's SNR, then scale to its peak level."""
    rng = np.random.default_rng(int(job.digest, 16))  # same clip, same noise
    if job.noise != "none":
        noise = make_noise(job.noise, len(audio), rng)
        noise_rms = float(np.sqrt(np.mean(noise ** 2))) + 1e-12
        audio = audio + noise * active_rms(audio) / (noise_rms * 10 ** (job.snr_db / 20))
    if job.peak_dbfs is not None:
        audio = audio * (10 ** (job.peak_dbfs / 20) / (np.max(np.abs(audio)) + 1e-12))
    return np.clip(audio, -1.0, 32767 / 32768)


def validate_clip(path: Path, job: ClipJob) -> float:
    """Duration of a finished clip; ClipError if it cannot hold the spoken text."""
    audio, rate = sf.read(path, dtype="float32")
    if rate != SAMPLE_RATE or audio.ndim != 1:
        raise ClipError("format", f"expected {SAMPLE_RATE} Hz mono, got {rate} Hz {audio.shape}")
    duration = len(audio) / rate
    if not len(audio) or np.max(np.abs(audio)) < 1e-3:
        raise ClipError("silent", f"{job.voice}: peak below -60 dBFS")
    words = max(1, len(job.text.split()))
    if job.source == "tts" and duration < MIN_SECONDS_PER_WORD * words:
        raise ClipError("too-short", f"{duration:.2f} s for {words} words")
    if duration > MAX_CLIP_SECONDS:
        raise ClipError("too-long", f"{duration:.1f} s, expected at most {MAX_CLIP_SECONDS}")
    return duration

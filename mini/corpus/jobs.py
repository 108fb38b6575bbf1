"""Corpus clips: one ``ClipJob`` per clip, the seeded plans of the train and devtest splits, and
the runs that make the clips (resumable: a finished clip is checked and reused).

A clip's file name holds a digest of everything it should contain (``ClipJob.relpath``), and job
i of ``plan_train`` depends only on the seed and i: the corpus on disk is addressed by these names.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from mini.corpus.augment import SAMPLE_RATE, augment, sox_to_16k, validate_clip
from mini.corpus.clip import ClipJob
from mini.corpus.tools import ClipError, run_tool
from mini.corpus.voices import (
    ALL_TTS_VOICES,
    ALLISON_VOICE,
    BASE_VOICE_WEIGHTS,
    EVAL_TTS_VOICES,
    PROSODY_PRESETS,
    TRAIN_BASE_VOICES,
    synthesize,
)

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")

# What plan_train draws each training clip's augmentation from.
TEMPO_RANGE = (0.85, 1.25)
# Pitch shifts (sox pitch, in cents) make more speakers of each voice; reverb adds rooms.
PITCH_CENTS_RANGE = (-350, 350)
PITCH_SHIFT_SHARE = 0.6
REVERB_RANGE = (10, 60)   # sox reverb's reverberance, %
REVERB_SHARE = 0.25
PEAK_DBFS_RANGE = (-20.0, -1.0)
SNR_DB_RANGE = (5.0, 30.0)
NOISE_KINDS = ("none", "white", "pink")
NOISE_WEIGHTS = (0.3, 0.35, 0.35)
PROSODY_SHARE = 0.5   # clips read with one of the engine's own non-default prosody presets
ALLISON_COPIES = 4    # each training prompt of the real speaker: once clean, then augmented copies


def _draw_augmentation(rng: random.Random) -> dict:
    """One training clip's tempo, level, noise, pitch, reverb and prosody preset; every value is drawn
    every time so the stream never depends on earlier choices."""
    tempo, peak = rng.uniform(*TEMPO_RANGE), rng.uniform(*PEAK_DBFS_RANGE)
    noise = rng.choices(NOISE_KINDS, NOISE_WEIGHTS)[0]
    snr = rng.uniform(*SNR_DB_RANGE)
    pitch = round(rng.uniform(*PITCH_CENTS_RANGE)) if rng.random() < PITCH_SHIFT_SHARE else 0
    reverb = round(rng.uniform(*REVERB_RANGE)) if rng.random() < REVERB_SHARE else 0
    prosody = rng.randrange(1, len(PROSODY_PRESETS)) if rng.random() < PROSODY_SHARE else 0
    return {"tempo": round(tempo, 3), "peak_dbfs": round(peak, 1), "noise": noise,
            "snr_db": None if noise == "none" else round(snr, 1), "pitch_cents": pitch, "reverb": reverb,
            "prosody": prosody}


def plan_train(pool: list[str], size: int, seed: int, codec: str = "wav",
               split: str = "train", exclude: tuple[str, ...] = ()) -> list[ClipJob]:
    """Training jobs; job i depends only on the seed and i, so a larger size extends. Each clip is
    read by a training voice (but the base voices in `exclude`) with its own tempo, level, noise,
    pitch, reverb and prosody; `split` names the folder and manifest (``digits`` for the digit strings)."""
    if not pool:
        raise ValueError("expected a non-empty training sentence pool, got 0 sentences")
    unknown = sorted(set(exclude) - set(TRAIN_BASE_VOICES))
    if unknown:
        raise ValueError(f"expected training base voices to exclude ({', '.join(sorted(TRAIN_BASE_VOICES))}), "
                         f"got {unknown}")
    rng = random.Random(f"{seed}:{split}-plan")  # "0:train-plan" for the training sentences
    bases = sorted(set(TRAIN_BASE_VOICES) - set(exclude))
    weights = [BASE_VOICE_WEIGHTS[b] for b in bases]
    jobs = []
    for i in range(size):
        base = rng.choices(bases, weights)[0]
        voice = rng.choice(TRAIN_BASE_VOICES[base])
        jobs.append(ClipJob(split, i, voice.label, pool[i % len(pool)], codec=codec, **_draw_augmentation(rng)))
    return jobs


def plan_allison(prompts: list[tuple[Path, str]], split: str, seed: int, copies: int = 1,
                 codec: str = "wav") -> list[ClipJob]:
    """Jobs for the real speaker's prompts: each prompt `copies` times, the first as recorded and the
    others with the training augmentation (tempo, pitch, reverb, noise; no prosody: it is a recording)."""
    rng = random.Random(f"{seed}:{split}-allison")
    jobs = []
    for copy in range(copies):
        for path, text in prompts:
            drawn = _draw_augmentation(rng)
            drawn = {} if copy == 0 else {**drawn, "prosody": 0}
            jobs.append(ClipJob(split, len(jobs), ALLISON_VOICE, text, source="real", src_path=str(path),
                                codec=codec if split != "validation" else "wav", **drawn))
    return jobs


def plan_clean_tts(pool: list[str], per_voice: int, voices=EVAL_TTS_VOICES, split: str = "devtest") -> list[ClipJob]:
    """Clean held-out jobs (validation or devtest); each voice reads its own sentences (interleaved pool)."""
    voices = sorted(voices)
    need = per_voice * len(voices)
    if len(pool) < need:
        raise ValueError(f"expected at least {need} {split} sentences for {per_voice} per voice, "
                         f"got {len(pool)}; raise --{split}_fraction")
    jobs = []
    for k, voice in enumerate(voices):
        for j, text in enumerate(pool[k::len(voices)][:per_voice]):
            jobs.append(ClipJob(split, j, voice, text))
    return jobs


TRANSCRIPT_LINE = re.compile(r"^\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\((\S+?)(?:\s+-?\d+)?\)\s*$")


def parse_sphinx_transcription(path: Path) -> dict[str, str]:
    """Sphinx transcripts: '<s> words </s> (utterance-id)', one utterance a line."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = TRANSCRIPT_LINE.match(line)
        if not match or not match.group(1):
            raise ValueError(f"{path}:{n}: expected '<s> words </s> (id)', got {line!r}")
        out[match.group(2)] = " ".join(match.group(1).split())
    return out


def _sphinx_set(folder: Path, transcription: str, voice: str) -> list[ClipJob]:
    texts = parse_sphinx_transcription(folder / transcription)
    wavs = sorted(folder.glob("*.wav"))
    if sorted(p.stem for p in wavs) != sorted(texts):
        raise ValueError(f"{folder}: expected one transcript per wav, got wavs "
                         f"{sorted(p.stem for p in wavs)} and transcripts {sorted(texts)}")
    return [ClipJob("devtest", i, voice, texts[p.stem], source="real", src_path=str(p))
            for i, p in enumerate(wavs)]


def plan_real(data_dir: Path = POCKETSPHINX_DATA) -> list[ClipJob]:
    """Every transcribed human recording in pocketsphinx-testdata (devtest only)."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"expected {data_dir} (apt-get install pocketsphinx-testdata)")
    jobs = _sphinx_set(data_dir / "librivox", "transcription", "librivox")
    jobs += _sphinx_set(data_dir / "cards", "cards.transcription", "cards")
    jobs.append(ClipJob("devtest", 0, "goforward", "go forward ten meters", source="real",
                        src_path=str(data_dir / "goforward.raw")))
    jobs.append(ClipJob("devtest", 0, "tidigits", "two nine three four zero", source="real",
                        src_path=str(data_dir / "tidigits" / "dhd.2934z.raw")))
    return jobs


def make_clip(job: ClipJob, out_dir: Path) -> float:
    """Write one clip (atomically) and return its duration in seconds."""
    final = out_dir / job.relpath
    if not job.text.strip():
        raise ClipError("empty-text", f"{job.voice}: no transcript")  # flite would still speak
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        tmp_dir = Path(tmp)
        speech = tmp_dir / "speech16k.wav"
        native = tmp_dir / "native.wav"
        if job.source == "real":
            src = Path(job.src_path)
            if src.suffix == ".g722":  # the Asterisk prompts: sox reads no G.722, ffmpeg does
                run_tool(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "g722", "-i", str(src), str(native)],
                         "ffmpeg")
                src = native
            sox_to_16k(src, speech, raw_input=src.suffix == ".raw", tempo=job.tempo, pitch_cents=job.pitch_cents,
                       reverb=job.reverb)
        else:
            synthesize(ALL_TTS_VOICES[job.voice], job.text, native, job.prosody)
            sox_to_16k(native, speech, tempo=job.tempo, pitch_cents=job.pitch_cents, reverb=job.reverb)
        if job.noise != "none" or job.peak_dbfs is not None:
            audio, _ = sf.read(speech, dtype="float64")
            sf.write(speech, augment(audio, job), SAMPLE_RATE, subtype="PCM_16")
        duration = validate_clip(speech, job)
        final.parent.mkdir(parents=True, exist_ok=True)
        if job.codec == "opus":
            # About a ninth of the PCM size; libsndfile decodes it back at 16 kHz, same length.
            audio, _ = sf.read(speech, dtype="float32")
            sf.write(final.with_suffix(".part"), audio, SAMPLE_RATE, format="OGG", subtype="OPUS")
        else:
            shutil.move(str(speech), final.with_suffix(".part"))
        os.replace(final.with_suffix(".part"), final)  # never a half-written clip
    return duration


@dataclass
class RunResult:
    records: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    reused: int = 0


def _existing_duration(job: ClipJob, out_dir: Path) -> float | None:
    path = out_dir / job.relpath
    if not path.exists():
        return None
    try:
        return validate_clip(path, job)
    except (ClipError, RuntimeError):  # unreadable or bad: make it again
        return None


def _do_job(job: ClipJob, out_dir: Path) -> tuple[float | None, bool, ClipError | None]:
    duration = _existing_duration(job, out_dir)
    if duration is not None:
        return duration, True, None
    try:
        return make_clip(job, out_dir), False, None
    except ClipError as exc:
        return None, False, exc


def generate(jobs: list[ClipJob], out_dir: Path, workers: int = 2,
             progress: bool = True) -> RunResult:
    """Make every job's clip (skipping finished ones); failures are collected, not raised."""
    from tqdm import tqdm

    result = RunResult()
    # Threads suffice: the work is in flite/festival/espeak/sox subprocesses.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = pool.map(lambda j: _do_job(j, out_dir), jobs)
        for job, (duration, reused, error) in tqdm(zip(jobs, outcomes), total=len(jobs),
                                                   desc="clips", disable=not progress):
            if error is not None:
                result.failures.append({"split": job.split, "voice": job.voice,
                                        "text": job.text, "reason": error.reason,
                                        "detail": str(error)})
                continue
            result.reused += reused
            result.records.append({"audio": job.relpath,
                                   "text": job.text, "source": job.source,
                                   "voice": job.voice, "duration": round(duration, 3)})
    return result

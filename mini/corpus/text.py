"""Corpus text: sentences from the Debian ``fortunes`` files, cleaned for TTS, split into pools.

``load_sentences`` keeps only plain English sentences a TTS engine reads one way (no digits,
abbreviations, all-caps words or speaker labels); ``split_pools`` divides them into disjoint
train, validation and devtest pools by a seeded hash of each sentence. ``digit_strings`` writes spoken digit
strings ("Two nine three four zero."), the kind of text the fortunes sentences never hold.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
# ascii-art is pictures; translate-me is Latin/French on purpose.
EXCLUDED_FORTUNE_FILES = {"ascii-art", "translate-me"}
MIN_WORDS, MAX_WORDS = 3, 25

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


def split_pools(sentences: list[str], seed: int, devtest_fraction: float = 0.1,
                validation_fraction: float = 0.05) -> tuple[list[str], list[str], list[str]]:
    """Disjoint (train, validation, devtest) pools, each in a seeded order.

    Membership depends only on the seed and the sentence itself, so changing the requested sizes
    never moves a sentence between splits: a seeded hash of the sentence below `devtest_fraction`
    puts it in devtest, below `devtest_fraction + validation_fraction` in validation (so adding a
    validation pool took sentences from train only, and devtest stayed as it was).
    """
    pools: dict[str, list[str]] = {"train": [], "validation": [], "devtest": []}
    seen = set()
    for sentence in sentences:
        key = sentence_key(sentence)
        if key in seen:
            continue
        seen.add(key)
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        split = ("devtest" if draw < devtest_fraction else
                 "validation" if draw < devtest_fraction + validation_fraction else "train")
        pools[split].append(sentence)
    for split, pool in pools.items():
        pool.sort(key=sentence_key)  # shuffle from a canonical order, whatever the input order
        random.Random(f"{seed}:{split}-order").shuffle(pool)
    return pools["train"], pools["validation"], pools["devtest"]


DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_STRING_LENGTHS = (1, 7)


def digit_strings(count: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """`count` distinct spoken digit strings of 1-7 digits ("Oh four seven."), seeded; none whose
    ``sentence_key`` is in `exclude` (the devtest transcripts)."""
    rng = random.Random(f"{seed}:digit-strings")
    out: list[str] = []
    seen = set(exclude)
    while len(out) < count:
        words = [rng.choice(DIGIT_WORDS) for _ in range(rng.randint(*DIGIT_STRING_LENGTHS))]
        text = " ".join(words).capitalize() + "."
        key = sentence_key(text)
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out

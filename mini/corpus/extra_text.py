"""More corpus text: WordNet's usage examples (Debian ``wordnet-base``), cleaned like the fortunes.

WordNet 3.0 glosses end in quoted examples of everyday use ("she sighed sadly"). ``load_extra_sentences``
keeps those that read as a clause, writes each as a sentence (capital first, final period), passes it
through the fortunes' own cleaning (``mini.corpus.text.clean_entry``) and drops any whose
``sentence_key`` is already taken (the fortunes sentences, or an earlier example). ``mini.make_corpus
--extra_text wordnet`` adds those that ``split_pools`` puts in training to the training pool, after the
fortunes; held-out clips stay as they are without it.
License: WordNet 3.0's (use, copy, modify and distribute for any purpose with its notice kept;
/usr/share/doc/wordnet-base/copyright).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mini.corpus.text import clean_entry, sentence_key

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.adj", "data.adv", "data.noun", "data.verb")
EXTRA_TEXT_SOURCES = {"wordnet": "wordnet-base"}  # --extra_text choice -> the Debian package holding it

# A lowercase example is kept only when it reads as a clause, not a phrase ("a large building"):
# it starts with a subject pronoun, asks a question, or has a finite verb with no relative word before it.
SUBJECT_WORDS = set("""
i he she we they it you i'm he's she's it's we're they're you're i've we've they've you've i'll he'll
she'll it'll we'll they'll you'll i'd he'd she'd we'd they'd you'd""".split())
FINITE_WORDS = set("""
is are was were am has have had will would can could shall should must may might does did do isn't aren't
wasn't weren't hasn't haven't hadn't won't wouldn't can't couldn't shouldn't doesn't didn't don't""".split())
RELATIVE_WORDS = {"who", "whom", "whose", "which", "that", "when", "where"}
EXAMPLE = re.compile(r'"([^"]+)"')


def read_wordnet_examples(path: Path) -> list[str]:
    """The quoted examples of one WordNet data file's glosses, in file order."""
    raw = path.read_bytes().decode("ascii", errors="replace")  # non-ASCII -> U+FFFD, dropped by cleaning
    examples = []
    for line in raw.splitlines():
        if line.startswith(" ") or " | " not in line:  # the license header, indented
            continue
        examples += EXAMPLE.findall(line.split(" | ", 1)[1])
    return examples


def reads_as_clause(example: str) -> bool:
    """True when a WordNet example is a sentence (as its editors capitalized it, or by its words)."""
    words = [w.strip(",;:!?.").lower() for w in example.split()]
    if not words:
        return False
    if example[0].isupper() or words[0] in SUBJECT_WORDS:
        return True
    if words[0] in FINITE_WORDS:
        return example.rstrip().endswith("?")  # "is everything all right?", not "had a filthy mouth"
    for i, word in enumerate(words):
        if word in FINITE_WORDS:
            return not RELATIVE_WORDS & set(words[:i])  # "the worst that could happen" is a phrase
    return False


def as_sentence(example: str) -> str:
    """A WordNet example written as a sentence: first letter capital, a final period if it has no end."""
    text = example.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def load_wordnet_sentences(wordnet_dir: Path = WORDNET_DIR, exclude: Iterable[str] = ()) -> list[str]:
    """WordNet's clause examples, cleaned as the fortunes are, none whose key is in `exclude` (sentences),
    unique by ``sentence_key`` (the first in file order wins) and sorted by it (deterministic)."""
    missing = [name for name in WORDNET_FILES if not (wordnet_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"expected WordNet's data files in {wordnet_dir}, missing {', '.join(missing)} "
                                f"(apt-get install wordnet-base)")
    taken = {sentence_key(s) for s in exclude}
    by_key: dict[str, str] = {}
    for name in WORDNET_FILES:
        for example in read_wordnet_examples(wordnet_dir / name):
            if not reads_as_clause(example):
                continue
            for sentence in clean_entry(as_sentence(example)):
                key = sentence_key(sentence)
                if key not in taken:
                    by_key.setdefault(key, sentence)
    return [by_key[k] for k in sorted(by_key)]


def load_extra_sentences(source: str, exclude: Iterable[str] = ()) -> list[str]:
    """The sentences of an ``--extra_text`` source (one of EXTRA_TEXT_SOURCES), none in `exclude`."""
    if source == "wordnet":
        return load_wordnet_sentences(exclude=exclude)
    raise ValueError(f"unknown extra text source {source!r}, expected one of {sorted(EXTRA_TEXT_SOURCES)}")

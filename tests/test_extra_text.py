"""The second corpus text source (mini.corpus.extra_text): WordNet's usage examples from Debian's wordnet-base
(`make test` installs it with the corpus packages), cleaned as the fortunes are and added by
`mini.make_corpus --extra_text wordnet` in the training pool."""

import json
import re

import pytest

from mini import make_corpus
from mini.corpus.extra_text import (
    WORDNET_FILES,
    as_sentence,
    load_extra_sentences,
    load_wordnet_sentences,
    read_wordnet_examples,
    reads_as_clause,
)
from mini.corpus.text import clean_entry, load_sentences, sentence_key, sentence_problem, split_pools

# Two synsets in WordNet's data-file layout (offset, lexfile, pos, words, pointers, "| gloss; examples").
DATA_VERB = """  1 This software and database is being provided to you, the LICENSEE, by "AS IS"
00005041 29 v 01 sigh 0 001 @ 00004227 v 0000 01 + 02 00 | heave or utter a sigh; "She sighed sadly"; \
"he sighed -- long and loud -- at the news"
00006238 29 v 02 hiccup 0 hiccough 0 000 01 + 02 00 | breathe spasmodically; "When you have to hiccup, \
drink a glass of cold water"; "force out the air"; "she SIGHED sadly!"
"""
DATA_NOUN = """00001740 03 n 01 entity 0 003 | that which exists; "a large building"; \
"the worst that could happen"; "is everything all right?"; "had a filthy mouth"; "the rope was taut"; \
"Route 66 is closed"; "Mr. Smith manned the desk"; "the NASA probe has landed"; "Time flies like an arrow"
"""


def _wordnet_dir(tmp_path, files=WORDNET_FILES):
    texts = {"data.verb": DATA_VERB, "data.noun": DATA_NOUN}
    for name in files:
        (tmp_path / name).write_text(texts.get(name, ""))
    return tmp_path


def test_read_wordnet_examples_takes_the_quoted_examples_of_each_gloss(tmp_path):
    path = _wordnet_dir(tmp_path) / "data.verb"
    assert read_wordnet_examples(path) == [
        "She sighed sadly", "he sighed -- long and loud -- at the news",
        "When you have to hiccup, drink a glass of cold water", "force out the air", "she SIGHED sadly!"]


@pytest.mark.parametrize("example, clause", [
    ("She sighed sadly", True),                 # capitalized by WordNet's editors
    ("he sighed at the news", True),            # a subject pronoun first
    ("it's a right smart distance", True),
    ("the rope was taut", True),                # a finite verb, no relative word before it
    ("is everything all right?", True),         # a question
    ("had a filthy mouth", False),              # no subject
    ("a large building", False),                # a phrase
    ("force out the air", False),
    ("the worst that could happen", False),     # the verb is in a relative clause
    ("", False),
])
def test_reads_as_clause(example, clause):
    assert reads_as_clause(example) is clause


def test_as_sentence_capitalizes_and_ends_with_a_period():
    assert as_sentence(" the rope was taut ") == "The rope was taut."
    assert as_sentence("is everything all right?") == "Is everything all right?"


def test_load_wordnet_sentences_cleans_like_the_fortunes_dedups_and_sorts(tmp_path):
    folder = _wordnet_dir(tmp_path)
    sentences = load_wordnet_sentences(folder)
    # "--" is a pause, a phrase is dropped, digits/abbreviations/all-caps are rejected by the fortunes' cleaning,
    # and "she SIGHED sadly!" is rejected too, not taken as a second "She sighed sadly."
    assert sentences == ["He sighed, long and loud, at the news.", "Is everything all right?",
                         "She sighed sadly.", "The rope was taut.", "Time flies like an arrow.",
                         "When you have to hiccup, drink a glass of cold water."]
    assert all(clean_entry(s) == [s] and sentence_problem(s) is None for s in sentences)
    # a sentence already in the pool (by sentence_key: case and punctuation ignored) is left out
    assert load_wordnet_sentences(folder, exclude=["time flies like an arrow!", "SHE SIGHED SADLY"]) == [
        "He sighed, long and loud, at the news.", "Is everything all right?", "The rope was taut.",
        "When you have to hiccup, drink a glass of cold water."]
    assert load_wordnet_sentences(folder) == sentences


def test_load_wordnet_sentences_names_the_package_when_it_is_missing(tmp_path):
    folder = _wordnet_dir(tmp_path, files=("data.adj", "data.adv"))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"expected WordNet's data files in {folder}, missing data.noun, data.verb "
            f"(apt-get install wordnet-base)")):
        load_wordnet_sentences(folder)
    with pytest.raises(FileNotFoundError, match=re.escape("missing data.adj, data.adv, data.noun, data.verb")):
        load_wordnet_sentences(tmp_path / "nowhere")


def test_load_extra_sentences_rejects_an_unknown_source():
    with pytest.raises(ValueError, match=re.escape(
            "unknown extra text source 'gcide', expected one of ['wordnet']")):
        load_extra_sentences("gcide")


def test_installed_wordnet_adds_twenty_thousand_new_clean_sentences():
    fortunes = load_sentences()
    extra = load_extra_sentences("wordnet", exclude=fortunes)
    assert len(extra) == 20039  # docs/mini-graft.md: wordnet-base 1:3.0-37 against bookworm's fortunes
    assert {"She sighed sadly.", "Pepper makes me sneeze.", "Can you jump over the fence?"} <= set(extra)
    keys = [sentence_key(s) for s in extra]
    assert keys == sorted(set(keys))  # unique and in key order
    assert not set(keys) & {sentence_key(s) for s in fortunes}
    assert "Time flies like an arrow." in fortunes and "Time flies like an arrow." in load_wordnet_sentences()
    assert all(clean_entry(s) == [s] for s in extra)
    assert load_extra_sentences("wordnet", exclude=fortunes) == extra


def test_extra_text_extends_the_training_pool_alone_and_keeps_the_held_out_clips(monkeypatch, tmp_path):
    fortunes = [f"The {a} {b} sat on the mat." for a in "red green blue grey pink".split()
                for b in "cat dog fox owl emu yak".split()]
    monkeypatch.setattr(make_corpus, "load_sentences", lambda: list(fortunes))
    monkeypatch.setattr(make_corpus, "plan_real", lambda: [])
    monkeypatch.setattr(make_corpus, "load_prompts", lambda: [])
    argv = ["--train_size", "6", "--digit_strings", "0", "--devtest_per_voice", "2", "--validation_per_voice", "2",
            "--allison_copies", "0", "--devtest_fraction", "0.3", "--validation_fraction", "0.3"]
    assert make_corpus.parse_args(argv).extra_text is None  # off by default: the fortunes alone
    jobs, info = make_corpus.build_jobs(make_corpus.parse_args(argv))
    assert "extra_text" not in info and info["sentences"] == len(fortunes)
    argv = ["--train_size", "3000", "--digit_strings", "20", "--devtest_per_voice", "2", "--validation_per_voice", "2",
            "--allison_copies", "0", "--devtest_fraction", "0.3", "--validation_fraction", "0.3"]
    plain, plain_info = make_corpus.build_jobs(make_corpus.parse_args(argv))
    jobs, info = make_corpus.build_jobs(make_corpus.parse_args(argv + ["--extra_text", "wordnet"]))
    extra = load_wordnet_sentences(exclude=fortunes)
    assert len(extra) == 20051  # all of WordNet's: none of these fortunes matches one
    train_extra = split_pools(extra, 0, 0.3, 0.3)[0]
    assert info["extra_text"] == "wordnet" and info["extra_sentences"] == len(train_extra) == 8008
    assert (info["sentences"], info["validation_pool"], info["devtest_pool"]) == (
        plain_info["sentences"], plain_info["validation_pool"], plain_info["devtest_pool"])
    assert info["train_pool"] == plain_info["train_pool"] + len(train_extra)
    assert (plain_info["train_sentence_repeats"], info["train_sentence_repeats"]) == (3000 - plain_info["train_pool"], 0)
    # the held-out clips are the same with or without the extra text; training reads the fortunes, then the extra
    assert [j for j in jobs if j.split not in ("train", "digits")] == [j for j in plain if j.split not in ("train", "digits")]
    train, plain_train = [j for j in jobs if j.split == "train"], [j for j in plain if j.split == "train"]
    fortune_count = plain_info["train_pool"]
    assert train[:fortune_count] == plain_train[:fortune_count]
    assert [j.text for j in train[fortune_count:]] == train_extra[:3000 - fortune_count]
    assert len({j.text for j in train}) == 3000 > len({j.text for j in plain_train}) == fortune_count
    for split in make_corpus.TRAINING + make_corpus.HELD_OUT:
        records = [{"audio": j.relpath, "text": j.text, "source": j.source, "voice": j.voice, "duration": 1.0}
                   for j in jobs if f"{j.split}.jsonl" == split]
        (tmp_path / split).write_text("".join(json.dumps(r) + "\n" for r in records))
    make_corpus.check_splits(tmp_path)  # the manifests' own leakage check passes
    with (tmp_path / "train.jsonl").open("a") as fh:
        fh.write(json.dumps({"audio": "x.wav", "text": next(j.text for j in jobs if j.split == "devtest"),
                             "source": "tts", "voice": "flite-kal", "duration": 1.0}) + "\n")
    with pytest.raises(ValueError, match="^sentence crosses from devtest to train"):
        make_corpus.check_splits(tmp_path)

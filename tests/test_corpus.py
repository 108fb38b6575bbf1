"""Fast checks of the corpus (mini.corpus, mini.make_corpus): text cleaning, splits, leakage guard, one tiny synthesis."""

import json
import re
import time

import numpy as np
import pytest
import soundfile as sf

from mini.corpus.augment import augment
from mini.corpus.clip import ClipJob
from mini.corpus.clock import MAKING_FILE, MakingClock, plan_fingerprint
from mini.corpus.jobs import generate, parse_sphinx_transcription, plan_train
from mini.corpus.manifests import check_disjoint, read_manifest, write_manifest, write_outputs
from mini.corpus.text import (
    DIGIT_WORDS,
    clean_entry,
    digit_strings,
    read_fortune_entries,
    sentence_key,
    sentence_problem,
    split_pools,
)
from train.evaluation.metrics import normalize

FORTUNE_TEXT = """A day for firm decisions!!!!!  Or is it?
%
Be cheerful while you are alive.
\t\t-- Phathotep, 24th Century B.C.
%
Bank error in your favor.  Collect $200.
%
See http://example.com for the whole story today.
%
int main(void) { return 0; }
%
Honi soit la vache qui rit.
%
Be careful!  UGLY strikes nine out of ten people.
%
It's a very *__\b\bUN*lucky week in which to be took dead.
%
Good night, Mrs. Calabash, wherever you are.
%
Q: What is the answer to life?
%
Subtlety
The ancients did not seek to rule people with knowledge.
%
"Is a Nissan male or female?" he began asking his friends.
%
The last entry has no closing percent sign -- and a dash."""


def test_read_fortune_entries_splits_on_percent_lines(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text(FORTUNE_TEXT)
    entries = read_fortune_entries(path)
    assert len(entries) == 13
    assert entries[-1].startswith("The last entry")


def test_clean_entry_keeps_only_plain_sentences(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text(FORTUNE_TEXT)
    kept = [s for e in read_fortune_entries(path) for s in clean_entry(e)]
    assert kept == [
        "A day for firm decisions!",            # punctuation runs collapsed
        "Or is it?",
        "Be cheerful while you are alive.",     # attribution line dropped
        "Bank error in your favor.",            # the "$200" sentence dropped
        "Is a Nissan male or female? he began asking his friends.",  # quotes are silent
        "The last entry has no closing percent sign, and a dash.",
    ]


@pytest.mark.parametrize("sentence, reason", [
    ("Call me at five or visit www.example.com today.", "abbreviation"),
    ("There are 3 apples on the table.", "symbols"),
    ("The NASA budget is large again.", "all-caps"),
    ("Old MacDonald had a farm there.", "mixed-case"),
    ("Two words.", "length"),
    ("the sentence starts in lower case.", "fragment"),
    ("Veni, vidi, vici, dixit Caesar.", "not-english"),
    ("Tcl is a language for the rest of us.", "no-vowel"),
    ("A: You do all of the work here.", "single-letter"),
    ("A perfectly ordinary sentence is fine.", None),
])
def test_sentence_problem_reasons(sentence, reason):
    assert sentence_problem(sentence) == reason


def test_sentence_key_ignores_case_and_punctuation():
    assert sentence_key("Don't PANIC, friend!") == sentence_key("dont panic friend")


def test_split_pools_is_deterministic_and_disjoint():
    sentences = [f"Sentence number {w} is here." for w in
                 ("one two three four five six seven eight nine ten".split() * 3)]
    sentences += [f"Another {a} {b} sentence." for a in "red green blue".split()
                  for b in "cat dog fox owl emu yak".split()]
    train, validation, devtest = split_pools(sentences, seed=7, devtest_fraction=0.3, validation_fraction=0.2)
    again = split_pools(list(reversed(sentences)), seed=7, devtest_fraction=0.3, validation_fraction=0.2)
    assert (train, validation, devtest) == again        # input order does not matter
    assert len(train) + len(validation) + len(devtest) == 28   # duplicates collapsed
    keys = [{sentence_key(s) for s in pool} for pool in (train, validation, devtest)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert devtest and validation and train
    assert split_pools(sentences, seed=8, devtest_fraction=0.3, validation_fraction=0.2) != (train, validation, devtest)
    # a validation pool takes sentences from train only: devtest stays as it was without one
    assert split_pools(sentences, seed=7, devtest_fraction=0.3, validation_fraction=0.0)[2] == devtest


def test_parse_sphinx_transcription(tmp_path):
    path = tmp_path / "transcription"
    path.write_text("<s> he was not an ill disposed young man </s> (utt-0880)\n"
                    "<s> ten of clubs  </s> (001)\n\n")
    assert parse_sphinx_transcription(path) == {
        "utt-0880": "he was not an ill disposed young man", "001": "ten of clubs"}
    path.write_text("no id on this line\n")
    with pytest.raises(ValueError, match="expected '<s> words </s> \\(id\\)'"):
        parse_sphinx_transcription(path)


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _rec(voice, text, source="tts"):
    return {"audio": "x.wav", "text": text, "source": source, "voice": voice, "duration": 1.0}


def test_check_disjoint_rejects_crossing_voice(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_rec("flite-kal", "One two three."),
                                              _rec("flite-slt", "Four five six.")])
    devtest = _write(tmp_path / "devtest.jsonl", [_rec("flite-slt", "Seven eight nine.")])
    expected = "voice crosses from devtest to train: expected no shared voices, got ['flite-slt']"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_disjoint(train, devtest)


def test_check_disjoint_rejects_crossing_sentence(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_rec("flite-kal", "Hello there, my friend!")])
    devtest = _write(tmp_path / "devtest.jsonl", [_rec("flite-slt", "hello there my friend")])
    expected = ("sentence crosses from devtest to train: expected no shared sentences, "
                "got 1, e.g. 'Hello there, my friend!'")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_disjoint(train, devtest)


def test_check_disjoint_rejects_real_recording_in_train(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_rec("goforward", "go forward", "real")])
    devtest = _write(tmp_path / "devtest.jsonl", [_rec("flite-slt", "Seven eight nine.")])
    expected = r"^evaluation-only voice in train: .* got \['goforward'\]$"
    with pytest.raises(ValueError, match=expected):
        check_disjoint(train, devtest)


def test_augment_hits_requested_snr_and_peak():
    t = np.arange(16000) / 16000
    speech = 0.5 * np.sin(2 * np.pi * 220 * t)
    noisy = augment(speech, ClipJob("train", 0, "flite-kal", "x", noise="pink",
                                    snr_db=10.0))
    noise = noisy - speech
    snr = 20 * np.log10(np.sqrt(np.mean(speech ** 2)) / np.sqrt(np.mean(noise ** 2)))
    assert abs(snr - 10.0) < 0.5
    scaled = augment(speech, ClipJob("train", 0, "flite-kal", "x", peak_dbfs=-6.0))
    assert np.max(np.abs(scaled)) == pytest.approx(10 ** (-6 / 20), rel=1e-6)


def test_two_clips_end_to_end(tmp_path):
    jobs = [ClipJob("train", 0, "flite-kal", "Go home now.", tempo=1.1, peak_dbfs=-3.0,
                    noise="white", snr_db=20.0),
            ClipJob("devtest", 0, "flite-slt", "Stay here today."),
            ClipJob("devtest", 1, "flite-slt", "")]  # nothing to say: must be reported
    result = generate(jobs, tmp_path, workers=1, progress=False)
    assert [(f["voice"], f["reason"]) for f in result.failures] == [("flite-slt", "empty-text")]
    stats = write_outputs(tmp_path, result, {})
    assert stats["failures"]["by_reason"] == {"devtest/flite-slt/empty-text": 1}
    for split in ("train", "devtest"):
        (rec,) = read_manifest(tmp_path / f"{split}.jsonl")
        assert set(rec) == {"audio", "text", "source", "voice", "duration"}
        assert rec["audio"].startswith(f"{split}/") and rec["source"] == "tts"
        audio, rate = sf.read(tmp_path / rec["audio"], dtype="int16")
        assert rate == 16000 and audio.ndim == 1
        assert rec["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
        assert stats[split]["clips"] == 1
    check_disjoint(tmp_path / "train.jsonl", tmp_path / "devtest.jsonl")
    assert generate(jobs[:2], tmp_path, workers=1, progress=False).reused == 2  # resumable


def test_opus_training_clip_is_ogg_at_16k_with_its_manifest_duration(tmp_path):
    job = ClipJob("train", 0, "flite-kal", "Go home now.", peak_dbfs=-3.0, noise="pink", snr_db=20.0,
                  codec="opus")
    wav = ClipJob("train", 0, "flite-kal", "Go home now.", peak_dbfs=-3.0, noise="pink", snr_db=20.0)
    assert job.relpath == wav.relpath[: -len(".wav")] + ".ogg"
    result = generate([job], tmp_path, workers=1, progress=False)
    (record,) = result.records
    info = sf.info(tmp_path / record["audio"])
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "OPUS", 16000, 1)
    audio, rate = sf.read(tmp_path / record["audio"], dtype="float32")
    assert record["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert (tmp_path / record["audio"]).stat().st_size < 0.25 * len(audio) * 2  # far under 16-bit PCM


def test_digit_strings_are_seeded_distinct_spoken_and_never_a_devtest_transcript():
    exclude = {sentence_key("two nine three four zero")}
    strings = digit_strings(300, seed=0, exclude=exclude)
    assert strings == digit_strings(300, seed=0, exclude=exclude)
    assert strings != digit_strings(300, seed=1, exclude=exclude)
    assert len({sentence_key(s) for s in strings}) == 300 and not exclude & {sentence_key(s) for s in strings}
    assert {len(s.split()) for s in strings} == set(range(1, 8))
    for text in strings:
        assert re.fullmatch(r"[A-Z][a-z]+( [a-z]+)*\.", text)
        assert set(text.rstrip(".").lower().split()) <= set(DIGIT_WORDS)
        assert sentence_problem(text) in (None, "length", "not-english")  # the fortunes filter would drop them
    assert normalize("Two nine three four zero.") == "29340"   # what the WER normaliser makes of them


def test_plan_train_digits_split_has_its_own_stream_and_folder():
    texts = ["Four one five.", "Nine.", "Oh six."]
    digits = plan_train(texts, 3, seed=0, split="digits")
    train = plan_train(texts, 3, seed=0)
    assert [j.relpath.split("/")[0] for j in digits] == ["digits"] * 3
    assert [j.text for j in digits] == texts
    assert [(j.voice, j.tempo) for j in digits] != [(j.voice, j.tempo) for j in train]
    assert plan_train(texts, 3, seed=0, split="digits") == digits


def test_plan_train_leaves_out_the_voices_asked():
    texts = [f"Sentence {i}." for i in range(200)]
    kept = plan_train(texts, 200, seed=0, exclude=("festival-rab_diphone", "festival-don_diphone"))
    assert not {j.voice for j in kept} & {"festival-rab_diphone", "festival-don_diphone"}
    assert {j.voice for j in plan_train(texts, 200, seed=0)} >= {"festival-rab_diphone", "festival-don_diphone"}
    with pytest.raises(ValueError, match=r"^expected training base voices to exclude \(.*\), got \['mbrola-us1'\]$"):
        plan_train(texts, 5, seed=0, exclude=("mbrola-us1",))


def test_check_disjoint_rejects_a_digit_string_read_in_devtest(tmp_path):
    rec = {"audio": "x.wav", "source": "tts", "voice": "flite-kal", "duration": 1.0}
    write_manifest(tmp_path / "digits.jsonl", [dict(rec, text="Two nine three four zero.")])
    write_manifest(tmp_path / "devtest.jsonl", [dict(rec, voice="tidigits", source="real",
                                                     text="two nine three four zero")])
    with pytest.raises(ValueError, match="^sentence crosses from devtest to digits: expected no shared sentences, "
                                         "got 1, e.g. 'Two nine three four zero.'$"):
        check_disjoint(tmp_path / "digits.jsonl", tmp_path / "devtest.jsonl")


def test_build_jobs_plans_digit_strings_apart_from_every_held_out_transcript(monkeypatch, tmp_path):
    from mini import make_corpus

    sentences = [f"The {a} {b} sat on the mat." for a in "red green blue grey pink".split()
                 for b in "cat dog fox owl emu yak".split()]
    monkeypatch.setattr(make_corpus, "load_sentences", lambda: sentences)
    tidigits = ClipJob("devtest", 0, "tidigits", "two nine three four zero", source="real", src_path="x.raw")
    monkeypatch.setattr(make_corpus, "plan_real", lambda: [tidigits])
    prompts = [(tmp_path / f"{i}.g722", text) for i, text in enumerate(
        ["Thank you.", "Please hold.", "Goodbye.", "Two nine three four zero.", "Press one.", "Agent login."])]
    monkeypatch.setattr(make_corpus, "load_prompts", lambda: prompts)
    args = make_corpus.parse_args(["--train_size", "6", "--digit_strings", "40", "--devtest_per_voice", "2",
                                   "--validation_per_voice", "2", "--allison_copies", "2",
                                   "--devtest_digit_strings", "3", "--devtest_fraction", "0.3",
                                   "--validation_fraction", "0.3"])
    jobs, info = make_corpus.build_jobs(args)
    splits = ("train", "digits", "validation", "devtest", "devtest-digits")
    by_split = {split: [j for j in jobs if j.split == split] for split in splits}
    allison = {split: [j for j in v if j.voice == "allison"] for split, v in by_split.items()}
    # the prompt that says what the tidigits clip says stays out of training
    assert "Two nine three four zero." not in {j.text for j in allison["train"]}
    assert len(allison["train"]) == 2 * len({j.text for j in allison["train"]})
    assert {k: len(v) - len(allison[k]) for k, v in by_split.items()} == {
        "train": 6, "digits": 40, "validation": 4, "devtest": 5, "devtest-digits": 6}  # fmt: skip
    assert info["digit_strings"] == 40
    assert {j.voice for j in by_split["validation"]} - {"allison"} == {"rhvoice-bdl", "pico-en-GB"}
    assert {j.voice for j in by_split["devtest-digits"]} == {"flite-slt", "festival-cmu_us_slt_arctic_hts"}
    keys = {split: {sentence_key(j.text) for j in v} for split, v in by_split.items()}
    held_out = keys["validation"] | keys["devtest"] | keys["devtest-digits"]
    assert not (keys["digits"] | keys["train"]) & held_out
    assert not keys["validation"] & keys["devtest"]
    assert not {j.voice for j in by_split["digits"]} & {j.voice for j in by_split["devtest-digits"]}
    args = make_corpus.parse_args(["--train_size", "0", "--digit_strings", "0", "--devtest_per_voice", "2",
                                   "--validation_per_voice", "0", "--allison_copies", "0",
                                   "--devtest_fraction", "0.3"])
    assert [j.split for j in make_corpus.build_jobs(args)[0]] == ["devtest"] * 5


def test_check_disjoint_lets_only_the_real_speaker_cross_into_validation(tmp_path):
    train = _write(tmp_path / "train.jsonl", [_rec("flite-kal", "One two three."),
                                              _rec("allison", "Thank you.", "real")])
    validation = _write(tmp_path / "validation.jsonl", [_rec("allison", "Please hold.", "real"),
                                                        _rec("rhvoice-bdl", "Four five six.")])
    check_disjoint(train, validation, shared_voices=("allison",))
    with pytest.raises(ValueError, match=r"^voice crosses from validation to train: expected no shared voices, "
                                         r"got \['allison'\]$"):
        check_disjoint(train, validation)
    _write(tmp_path / "validation.jsonl", [_rec("allison", "thank you", "real")])
    with pytest.raises(ValueError, match="^sentence crosses from validation to train"):
        check_disjoint(train, validation, shared_voices=("allison",))


@pytest.mark.parametrize("text, cleaned", [
    ("Please press 1 to accept, or 2 to reject it", "Please press one to accept, or two to reject it"),
    ("press * to toggle pause, press # to exit", "Press star to toggle pause, press pound to exit"),
    ("at [@]", "At"), ("[ascending tones]", None), ("b", "B"), ("Line 115 is busy.", "Line one hundred fifteen is busy."),
    ("At the sound of the tone, the time will be exactly...", "At the sound of the tone, the time will be exactly."),
    ("Call 2024 now", None), ("50% off", None),
])  # fmt: skip
def test_asterisk_prompts_are_written_as_spoken(text, cleaned):
    from mini.corpus.allison import clean_prompt

    assert clean_prompt(text) == cleaned


def test_asterisk_prompts_split_by_transcript_and_parse_their_file(tmp_path):
    import gzip

    from mini.corpus.allison import load_prompts, number_words, split_prompts

    assert [number_words(n) for n in (0, 13, 40, 99, 100, 305)] == [
        "zero", "thirteen", "forty", "ninety nine", "one hundred", "three hundred five"]
    for name in ("hello", "beep", "digits/7"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.g722").write_bytes(b"x")
    transcripts = tmp_path / "t.txt.gz"
    with gzip.open(transcripts, "wt") as handle:
        handle.write("; Core sounds\n\nhello: Hello.\nbeep: [a beep]\ndigits/7: seven\nmissing: Not here.\n")
    prompts = load_prompts(tmp_path, transcripts)
    assert [(p.relative_to(tmp_path).as_posix(), t) for p, t in prompts] == [("digits/7.g722", "Seven"),
                                                                             ("hello.g722", "Hello.")]
    many = [(tmp_path / f"{i}.g722", f"Prompt {number_words(i)}.") for i in range(200)]
    many += [(tmp_path / "again.g722", "Prompt seven.")]  # the same words twice: both on one side
    train, validation = split_prompts(many, seed=0)
    assert 10 < len(validation) < 50 and len(train) + len(validation) == 201
    assert not {t for _, t in train} & {t for _, t in validation}
    with pytest.raises(FileNotFoundError, match="apt-get install asterisk-core-sounds-en"):
        load_prompts(tmp_path / "nowhere", transcripts)


def test_plan_allison_keeps_the_first_copy_as_recorded(tmp_path):
    from mini.corpus.jobs import plan_allison

    prompts = [(tmp_path / "a.g722", "Hello."), (tmp_path / "b.g722", "Goodbye.")]
    jobs = plan_allison(prompts, "train", seed=0, copies=3)
    assert [(j.text, j.source, j.voice) for j in jobs[:2]] == [("Hello.", "real", "allison"), ("Goodbye.", "real", "allison")]
    assert all(j.tempo == 1.0 and j.noise == "none" and j.pitch_cents == 0 for j in jobs[:2])
    assert len({j.relpath for j in jobs}) == 6 and all(j.prosody == 0 for j in jobs)
    assert any(j.tempo != 1.0 for j in jobs[2:])
    assert [j.codec for j in plan_allison(prompts, "validation", seed=0, codec="opus")] == ["wav", "wav"]


def test_prosody_presets_map_to_each_engines_own_settings():
    from mini.corpus.voices import _pico_markup, _prosody_flags

    assert all(_prosody_flags(engine, 1.0, 1.0) == [] for engine in ("flite", "espeak", "rhvoice", "piper", "festival"))
    assert _prosody_flags("rhvoice", 0.85, 1.12) == ["-r", "85", "-t", "112"]
    assert _prosody_flags("espeak", 1.18, 1.0) == ["-s", "206"]
    assert _prosody_flags("piper", 0.85, 1.0) == ["--length-scale", "1.176"]
    assert _prosody_flags("flite", 0.85, 1.0) == ["--setf", "duration_stretch=1.176"]
    assert _pico_markup("Hi.", 1.18, 0.88) == "<pitch level='88'><speed level='118'>Hi.</speed></pitch>"
    assert _pico_markup("Hi.", 1.0, 1.0) == "Hi."


def test_every_corpus_voice_speaks_and_no_two_sound_alike():
    """Each engine (flite, festival, espeak-ng, RHVoice, pico, piper) is installed (make test installs them) and
    each voice of every split gives audio of its own: a missing voice falls back silently otherwise."""
    from mini.corpus.voices import ALL_TTS_VOICES, TRAIN_BASE_VOICES, probe_voices

    labels = [voices[0].label for voices in TRAIN_BASE_VOICES.values()]
    labels += [label for label in ALL_TTS_VOICES if not label.startswith(("espeak-", *TRAIN_BASE_VOICES))]
    probe_voices(labels)
    assert {ALL_TTS_VOICES[label].engine for label in labels} == {"flite", "festival", "espeak", "rhvoice", "pico", "piper"}


def test_making_clock_sums_the_runs_of_one_plan_and_writes_while_a_run_works(tmp_path):
    with MakingClock(tmp_path, "plan-a", every=0.01) as clock:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a run ended here would have left this record
            saved = json.loads((tmp_path / MAKING_FILE).read_text())
            if saved["seconds"] > 0:
                break
            time.sleep(0.01)
        assert (saved["plan"], saved["runs"]) == ("plan-a", 1) and saved["seconds"] > 0
    first = json.loads((tmp_path / MAKING_FILE).read_text())
    assert first == {"plan": "plan-a", "seconds": round(clock.seconds(), 1), "runs": 1}
    (tmp_path / MAKING_FILE).write_text(json.dumps({"plan": "plan-a", "seconds": 1838.7, "runs": 1}))
    with MakingClock(tmp_path, "plan-a") as clock:  # continued: the same settings
        pass
    assert clock.runs == 2 and 1838.7 <= clock.seconds() < 1848.7
    assert json.loads((tmp_path / MAKING_FILE).read_text())["runs"] == 2
    with MakingClock(tmp_path, "plan-b") as clock:  # other settings: a new sum
        pass
    assert clock.runs == 1 and clock.seconds() < 10
    assert plan_fingerprint(["b.wav", "a.wav"]) == plan_fingerprint(["a.wav", "b.wav"]) != plan_fingerprint(["a.wav"])


def test_make_corpus_records_the_seconds_of_every_run_of_its_settings(tmp_path, monkeypatch, capsys):
    from mini import make_corpus

    plans = {"two": [ClipJob("train", 0, "flite-kal", "Go home now."), ClipJob("devtest", 0, "flite-slt", "Stay here.")]}
    plans["one"] = plans["two"][:1]
    monkeypatch.setattr(make_corpus, "build_jobs", lambda args: (plans[args.plan_name], {"sentences": 2, "train_pool": 1, "validation_pool": 0, "devtest_pool": 1}))
    runs = []
    for name in ("two", "two", "one"):
        args = make_corpus.parse_args(["--out", str(tmp_path), "--no_progress"])
        args.plan_name = name
        monkeypatch.setattr(make_corpus, "parse_args", lambda argv, args=args: args)
        assert make_corpus.main([]) == 0
        stats = json.loads((tmp_path / "stats.json").read_text())
        runs.append((stats["making_runs"], stats["reused_clips"], stats["making_seconds"], stats["generation_seconds"]))
        assert stats["plan"] == plan_fingerprint(j.relpath for j in plans[name])
        assert f"({stats['making_seconds']} s over {stats['making_runs']} run(s) of these settings)" in capsys.readouterr().out
    assert [(r, reused) for r, reused, *_ in runs] == [(1, 0), (2, 2), (1, 1)]
    assert runs[1][2] >= runs[0][2] + runs[1][3] - 0.2  # the second run adds its own seconds to the first's
    assert runs[2][2] <= runs[2][3] + 0.1  # other settings count their own run alone

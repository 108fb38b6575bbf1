"""Build an offline speech corpus (TTS + real recordings) for a small ASR model.

    python -m mini.make_corpus --out build/corpus [--train_size N] [--digit_strings D]
        [--validation_per_voice V] [--devtest_per_voice M] [--devtest_digit_strings K] [--seed S]
        [--extra_text wordnet]

Text comes from the Debian ``fortunes`` files (``--extra_text wordnet`` adds WordNet's usage
examples, ``mini.corpus.extra_text``, to the training pool only, after the fortunes); speech from flite, festival
(three diphone voices and slt's HTS voice), espeak-ng, RHVoice, SVOX pico and piper; real human speech from
``pocketsphinx-testdata`` and the Asterisk prompts (``mini.corpus.allison``). Three splits, by rule
(``mini.corpus.manifests``): train; validation (RHVoice bdl, pico en-GB and a held-out slice of
the Asterisk prompts), on which every choice is made; devtest (flite slt, festival slt HTS and the
pocketsphinx recordings), scored and never used to choose. No voice, recording or sentence crosses
between them. ``digits.jsonl`` holds spoken digit strings read by the training voices (none of
them a held-out transcript); ``devtest-digits.jsonl`` other digit strings read by the devtest
voices. ``check_disjoint`` enforces all of it on the written manifests. The pieces live in
``mini.corpus``: text, extra_text, voices, allison, augment, jobs, manifests, clock (the seconds spent
making the corpus, summed over the runs that worked on it: ``making.json``).

System tools needed (``make demo-deps``): flite, festival (+ festvox-kallpc16k, festvox-rablpc16k,
festvox-don, festvox-us-slt-hts), espeak-ng, rhvoice (+ rhvoice-english), libttspico-utils, sox,
ffmpeg, fortunes (+ fortunes-min), pocketsphinx-testdata, asterisk-core-sounds-en(-g722), wordnet-base
(``--extra_text wordnet`` only, ``make corpus-deps``); piper in
``.venv-piper`` (``make .venv-piper``). Python: numpy, soundfile, tqdm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mini.corpus.allison import load_prompts, split_prompts
from mini.corpus.clip import ClipJob
from mini.corpus.clock import MakingClock, plan_fingerprint
from mini.corpus.extra_text import EXTRA_TEXT_SOURCES, load_extra_sentences
from mini.corpus.jobs import ALLISON_COPIES, generate, plan_allison, plan_clean_tts, plan_real, plan_train
from mini.corpus.manifests import check_disjoint, stale_files, summary_table, write_outputs
from mini.corpus.text import digit_strings, load_sentences, sentence_key, split_pools
from mini.corpus.voices import ALLISON_VOICE, EVAL_TTS_VOICES, VALIDATION_TTS_VOICES, probe_voices

TRAINING = ("train.jsonl", "digits.jsonl")
HELD_OUT = ("validation.jsonl", "devtest.jsonl", "devtest-digits.jsonl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m mini.make_corpus",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/corpus"))
    ap.add_argument("--train_size", type=int, default=20000, help="training clips (default 20000)")
    ap.add_argument("--digit_strings", type=int, default=1000,
                    help="spoken digit strings of 1-7 digits in digits.jsonl (default 1000)")
    ap.add_argument("--validation_per_voice", type=int, default=40,
                    help="clean validation clips per validation TTS voice (default 40; 0 leaves validation out, "
                         "the Asterisk prompts then all train)")
    ap.add_argument("--devtest_per_voice", type=int, default=40,
                    help="clean devtest clips per evaluation TTS voice (default 40)")
    ap.add_argument("--devtest_digit_strings", type=int, default=0,
                    help="digit strings per evaluation TTS voice in devtest-digits.jsonl (default 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra_text", choices=sorted(EXTRA_TEXT_SOURCES), default=None,
                    help="add a second source's sentences to the training pool, after the fortunes (held-out clips "
                         "unchanged): wordnet, WordNet's usage examples (Debian wordnet-base), cleaned as the "
                         "fortunes are (default: fortunes only)")
    ap.add_argument("--exclude_voices", nargs="+", default=[], metavar="BASE_VOICE",
                    help="training base voices to leave out, e.g. festival-rab_diphone festival-don_diphone (their "
                         "OALD lexicon is free for non-commercial use only; docs/mini-graft.md, the voice table)")
    ap.add_argument("--train_codec", choices=("wav", "opus"), default="wav",
                    help="training clips as 16-bit WAV (default) or Ogg Opus, about 9x smaller; "
                         "devtest clips are always WAV")
    ap.add_argument("--workers", type=int, default=2, help="parallel synthesis jobs (default 2)")
    ap.add_argument("--devtest_fraction", type=float, default=0.1,
                    help="share of sentences reserved for devtest (default 0.1)")
    ap.add_argument("--validation_fraction", type=float, default=0.05,
                    help="share of sentences reserved for validation (default 0.05)")
    ap.add_argument("--allison_copies", type=int, default=ALLISON_COPIES,
                    help=f"times each training prompt of the real speaker is in train, augmented but for the first "
                         f"(default {ALLISON_COPIES}; 0 leaves them out)")
    ap.add_argument("--max_fail_fraction", type=float, default=0.02,
                    help="exit 1 if more clips than this fail (default 0.02)")
    ap.add_argument("--prune", action="store_true",
                    help="delete clip files that the current settings do not use")
    ap.add_argument("--no_progress", action="store_true")
    return ap.parse_args(argv)


def build_jobs(args: argparse.Namespace) -> tuple[list[ClipJob], dict]:
    sentences = load_sentences()
    train_pool, validation_pool, devtest_pool = split_pools(sentences, args.seed, args.devtest_fraction,
                                                            args.validation_fraction)
    exclude = tuple(args.exclude_voices)
    devtest = plan_clean_tts(devtest_pool, args.devtest_per_voice) + plan_real()
    validation = []
    if args.validation_per_voice > 0:
        validation = plan_clean_tts(validation_pool, args.validation_per_voice, VALIDATION_TTS_VOICES, "validation")
    allison_train = []
    if args.allison_copies > 0 or validation:
        allison_train, allison_validation = split_prompts(load_prompts(), args.seed)
        if not validation:  # no validation split: every prompt trains
            allison_train, allison_validation = allison_train + allison_validation, []
        validation += plan_allison(allison_validation, "validation", args.seed)
    # A sentence that a held-out clip says ("Thank you.") never trains.
    held_out_keys = {sentence_key(j.text) for j in devtest + validation}
    allison_train = [(path, text) for path, text in allison_train if sentence_key(text) not in held_out_keys]
    extra = []
    if args.extra_text:
        # Extra text only extends the training pool, after the fortunes: it replaces the repeats that a
        # train_size above the fortunes' pool would read, and the held-out clips stay the default corpus's.
        # The extra sentences that the seeded split would hold out are dropped, not moved into training.
        extra = split_pools(load_extra_sentences(args.extra_text, exclude=sentences), args.seed,
                            args.devtest_fraction, args.validation_fraction)[0]
        extra = [s for s in extra if sentence_key(s) not in held_out_keys]
    jobs = plan_train(train_pool + extra, args.train_size, args.seed, args.train_codec, exclude=exclude)
    if args.allison_copies > 0:
        jobs += plan_allison(allison_train, "train", args.seed, args.allison_copies, args.train_codec)
    digits = digit_strings(args.digit_strings, args.seed, held_out_keys)
    if digits:
        jobs += plan_train(digits, len(digits), args.seed, args.train_codec, split="digits", exclude=exclude)
    if args.devtest_digit_strings > 0:
        voices = len(EVAL_TTS_VOICES)
        held_out = digit_strings(args.devtest_digit_strings * voices, args.seed + 1,
                                 held_out_keys | {sentence_key(t) for t in digits})
        devtest += plan_clean_tts(held_out, args.devtest_digit_strings, split="devtest-digits")
    jobs += validation + devtest
    pool = len(train_pool) + len(extra)
    info = {"sentences": len(sentences), "train_pool": pool, "validation_pool": len(validation_pool),
            "devtest_pool": len(devtest_pool), "digit_strings": len(digits),
            "train_sentence_repeats": max(0, args.train_size - pool)}
    if args.extra_text:  # the default corpus's stats stay as they were
        info.update(extra_text=args.extra_text, extra_sentences=len(extra))
    return jobs, info


def check_splits(out: Path) -> None:
    """Every training manifest against every held-out one, and validation against devtest."""
    for training in TRAINING:
        for held_out in HELD_OUT:
            check_disjoint(out / training, out / held_out, shared_voices=(ALLISON_VOICE,))
    for held_out in HELD_OUT[1:]:
        check_disjoint(out / "validation.jsonl", out / held_out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    jobs, info = build_jobs(args)
    args.out.mkdir(parents=True, exist_ok=True)
    with MakingClock(args.out, plan_fingerprint(j.relpath for j in jobs)) as clock:
        probe_voices(sorted({j.voice for j in jobs if j.source == "tts"}))
        result = generate(jobs, args.out, args.workers, progress=not args.no_progress)
    info.update(seed=args.seed, reused_clips=result.reused, generation_seconds=round(time.time() - start, 1),
                plan=clock.plan, making_seconds=round(clock.seconds(), 1), making_runs=clock.runs)
    stale = stale_files(args.out, result.records, args.prune)
    stats = write_outputs(args.out, result, info)
    check_splits(args.out)
    print(summary_table(stats))
    print(f"sentences: {info['sentences']} (train pool {info['train_pool']}, validation pool "
          f"{info['validation_pool']}, devtest pool {info['devtest_pool']}); reused {result.reused} clips; "
          f"{info['generation_seconds']} s ({info['making_seconds']} s over {info['making_runs']} run(s) of these "
          f"settings); manifests in {args.out}")
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

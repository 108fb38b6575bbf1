"""A small generated audio set for smoke runs and tests, where the audio determines the text.

    python -m train.building.toy_audio --output build/smoke/audio [--train 16 --devtest 6 --words 16 --max_words 3]

Each word of the vocabulary has its own tone (`word_frequency`); a clip says its text as one
0.4 s tone per word, with a little noise, at 16 or 22.05 kHz (the processor resamples). A model
can only predict the words from the audio, so training on this set shows whether a graft
listens: the loss with each clip's own audio falls below the loss with the audio zeroed
(`train.evaluation.listening`).

The train manifest also holds three broken rows on purpose (a missing file, an empty text, a
clip over the tiny graft's 120 s maximum) so that skipping and counting is exercised every run.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
WORD_SECONDS = 0.4


def word_frequency(index: int) -> float:
    """The tone of word `index`: 200 Hz up in steps of a minor third, far apart on the mel scale."""
    return 200.0 * 2 ** (index / 4)


def _clip(rng, word_indices, rate: int) -> np.ndarray:
    t = np.arange(int(WORD_SECONDS * rate)) / rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms ramps: no clicks between words
    tones = [0.3 * fade * np.sin(2 * np.pi * word_frequency(i) * t) for i in word_indices]
    audio = np.concatenate(tones)
    return (audio + 0.01 * rng.standard_normal(audio.size)).astype(np.float32)


def _write_split(folder: Path, name: str, count: int, rng, words: int, max_words: int) -> list[dict]:
    rows = []
    for index in range(count):
        rate = int(rng.choice([16000, 22050]))
        chosen = rng.integers(0, words, size=int(rng.integers(1, max_words + 1)))
        path = folder / f"{name}-{index:03d}.wav"
        soundfile.write(path, _clip(rng, chosen, rate), rate, subtype="PCM_16")
        rows.append({"audio": path.name, "text": " ".join(WORDS[i] for i in chosen), "id": f"{name}-{index:03d}"})
    return rows


def make_toy_audio(output: Path, train: int = 16, devtest: int = 6, seed: int = 0, words: int = 16,
                   max_words: int = 3, validation: int = 4) -> dict:  # fmt: skip
    """Write the clips and `train.jsonl` / `devtest.jsonl` / `validation.jsonl` (what in-training evaluation
    reads: choices are never made on dev-test); returns the manifest paths by split."""
    if not 1 <= words <= len(WORDS):
        raise ValueError(f"words must be between 1 and {len(WORDS)}, got {words}")
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": _write_split(output, "train", train, rng, words, max_words),
              "devtest": _write_split(output, "devtest", devtest, rng, words, max_words),
              # drawn last, so that train and dev-test stay the clips they were before this split
              "validation": _write_split(output, "validation", validation, rng, words, max_words)}  # fmt: skip
    soundfile.write(output / "too-long.wav", np.zeros(121 * 16000, dtype=np.int16), 16000)
    splits["train"] += [
        {"audio": "missing.wav", "text": "never heard", "id": "broken-missing"},
        {"audio": splits["train"][0]["audio"], "text": "  ", "id": "broken-empty-text"},
        {"audio": "too-long.wav", "text": "far too long", "id": "broken-too-long"},
    ]
    for name, rows in splits.items():
        with open(output / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return {name: output / f"{name}.jsonl" for name in splits}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--devtest", type=int, default=6)
    parser.add_argument("--validation", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--words", type=int, default=16, help="vocabulary size (one tone per word)")
    parser.add_argument("--max_words", type=int, default=3, help="words per clip, at most")
    args = parser.parse_args(argv)
    print(make_toy_audio(args.output, args.train, args.devtest, args.seed, args.words, args.max_words, args.validation))


if __name__ == "__main__":
    main()

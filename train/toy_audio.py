"""A small generated audio set for smoke runs and tests: tone-and-noise clips with short texts.

    python -m train.toy_audio --output build/smoke/audio [--train 16 --devtest 6]

The train manifest also holds three broken rows on purpose (a missing file, an empty text, a
clip over the tiny graft's 120 s maximum) so that skipping and counting is exercised every run.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def _clip(rng, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t)
    return (tone + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


def _write_split(folder: Path, name: str, count: int, rng) -> list[dict]:
    rows = []
    for index in range(count):
        rate = int(rng.choice([16000, 22050]))  # mixed rates: the processor resamples
        path = folder / f"{name}-{index:03d}.wav"
        soundfile.write(path, _clip(rng, rng.uniform(0.5, 2.5), rate), rate, subtype="PCM_16")
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        rows.append({"audio": path.name, "text": text, "id": f"{name}-{index:03d}"})
    return rows


def make_toy_audio(output: Path, train: int = 16, devtest: int = 6, seed: int = 0) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": _write_split(output, "train", train, rng), "devtest": _write_split(output, "devtest", devtest, rng)}
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_toy_audio(args.output, args.train, args.devtest, args.seed))


if __name__ == "__main__":
    main()

"""CPU benchmark of one training step: logits at answer positions only against the full logits.

    python -m bench.train_step [--model build/mini-graft] [--batch_size 8] [--repeats 3]

Same model, same batch (clips of 2-6 s with their answers), projector trainable as in stage 1:
times forward + backward with the model in training mode (answer positions only) and with the
parent's full-vocabulary logits at every position, checks the two losses agree, and prints both.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench import peak_rss_mib, reset_peak_rss, speech
from train.stages.data import SpeechCollator
from train.weights.loading import PROJECTOR_PREFIX, load_graft

ANSWERS = ["the quick brown fox jumps over the lazy dog", "go forward ten meters", "two nine three four zero",
           "he was not an ill disposed young man"]  # fmt: skip


def step(model, batch, answer_only: bool) -> tuple[float, float]:
    """(seconds, loss) of one forward + backward."""
    model.train(answer_only)  # training mode takes the answer-only path; eval mode the parent's
    started = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return seconds, loss.item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/mini-graft"))
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    args = parser.parse_args(argv)
    model, processor = load_graft(args.model, dtype=getattr(torch, args.dtype))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(PROJECTOR_PREFIX)
    rng = np.random.default_rng(0)
    items = [{"audio": speech(float(rng.uniform(2, 6)), i), "text": ANSWERS[i % len(ANSWERS)]} for i in range(args.batch_size)]
    batch = SpeechCollator(processor)(items)
    batch["input_features"] = batch["input_features"].to(model.dtype)
    n_answer = int((batch["labels"][:, 1:] != -100).sum())
    print(f"model {args.model}, batch {args.batch_size}, {batch['input_ids'].numel()} token positions, "
          f"{n_answer} answer positions, vocabulary {model.config.text_config.vocab_size}, {args.dtype}")  # fmt: skip
    for answer_only in (False, True):
        step(model, batch, answer_only)  # warm-up
        reset_peak_rss()
        runs = [step(model, batch, answer_only) for _ in range(args.repeats)]
        label = "answer positions only" if answer_only else "full logits (parent)"
        print(f"{label:>24}: p50 {statistics.median(s for s, _ in runs):.2f} s, loss {runs[0][1]:.4f}, "
              f"peak RSS {peak_rss_mib():.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()

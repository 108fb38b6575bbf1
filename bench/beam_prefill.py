"""Beam search with each clip's prompt read once against once per beam: the graft's pipeline over dev-test clips.

    python -m bench.beam_prefill [--model build/mini-graft] [--data build/demo-corpus/devtest.jsonl]
        [--clips 24] [--batch_size 8] [--num_beams 4] [--rounds 2] [--max_new_tokens 256] [--speech_detector auto]

The two ways alternate (once, every, once, every, ...) in one process after a warm-up, so both see the
same machine. "every" is transformers' own way: each beam's row is read by the encoder and the LLM.
Prints the seconds of each round, their medians, and whether the two ways wrote the same texts.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def main(argv=None) -> dict:
    from transformers import pipeline

    from mini.demo import load_clips

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/mini-graft")
    parser.add_argument("--data", type=Path, default=Path("build/demo-corpus/devtest.jsonl"))
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_beams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--speech_detector", default="auto", choices=("auto", "silero", "energy"))
    args = parser.parse_args(argv)
    samples = [row["samples"] for row in load_clips(args.data)[: args.clips]]
    asr = pipeline("automatic-speech-recognition", model=args.model, trust_remote_code=True,
                   speech_detector=args.speech_detector)  # fmt: skip
    if not hasattr(asr.model, "_rows_per_clip"):
        raise ValueError(f"{args.model}: its modeling code predates reading the prompt once per clip: rebuild it")
    kwargs = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
              "generate_kwargs": {"num_beams": args.num_beams}}  # fmt: skip
    encoder_windows = []  # the projector's input: one row per encoded window, whichever way the encoder ran
    asr.model.model.audio_projector.register_forward_hook(lambda module, args, out: encoder_windows.append(args[0].shape[0]))

    def transcribe(way: str) -> tuple[float, list[str]]:
        if way == "every":
            asr.model._rows_per_clip = lambda input_ids, generate_kwargs: 1
        encoder_windows.clear()
        started = time.perf_counter()
        with torch.no_grad():
            texts = [out["text"] for out in asr(samples, **kwargs)]
        seconds = time.perf_counter() - started
        asr.model.__dict__.pop("_rows_per_clip", None)
        windows[way] = sum(encoder_windows)
        return seconds, texts

    windows = {}
    transcribe("once")  # warm-up
    seconds, texts = {"once": [], "every": []}, {}
    for round_ in range(args.rounds):
        for way in ("once", "every"):
            took, texts[way] = transcribe(way)
            seconds[way].append(round(took, 1))
            print(f"round {round_ + 1}, prompt read {way}: {took:.1f} s", flush=True)
    result = {"clips": len(samples), "num_beams": args.num_beams, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "seconds": seconds, "median_s": {way: statistics.median(s) for way, s in seconds.items()},
              "encoder_windows": windows, "same_texts": texts["once"] == texts["every"]}  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""Where a batch-1 decode step's time goes on CPU: dtype and cache kind, on one clip.

    python -m bench.decode_probe [--model build/mini-graft] [--dtype float32] [--seconds 5]

Generates 1 and 16 tokens (after a 2-token warm-up) with the dynamic and the static cache and
prints the seconds of each and of one decode step ((t16 - t1) / 15), with the first generated
token ids, so both caches can be seen to give the same tokens.
"""

import argparse
import time
from pathlib import Path

import torch

from bench.bench import speech
from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
from train.weights.loading import load_graft


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/mini-graft"))
    parser.add_argument("--dtype", default="float32", choices=("bfloat16", "float32"))
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    model, processor = load_graft(args.model, dtype=dtype)
    inputs = processor(text=[build_prompt(processor)], audio=[speech(args.seconds)], sampling_rate=SAMPLING_RATE)
    inputs["input_features"] = inputs["input_features"].to(dtype)

    def generate(new_tokens: int, **kwargs):
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kwargs)
        return time.perf_counter() - started, out

    results = {}
    for name, kwargs in (("dynamic", {}), ("static", {"cache_implementation": "static"})):
        generate(2, **kwargs)
        one, _ = generate(1, **kwargs)
        sixteen, out = generate(16, **kwargs)
        results[name] = {"first_token_s": round(one, 3), "sixteen_tokens_s": round(sixteen, 3),
                         "decode_step_s": round((sixteen - one) / 15, 3), "tokens": out[0, -16:].tolist()}  # fmt: skip
        print(f"{name} cache, {args.dtype}: 1 token {one:.2f} s, 16 tokens {sixteen:.2f} s, "
              f"decode step {(sixteen - one) / 15:.3f} s, first tokens {out[0, -16:].tolist()[:6]}", flush=True)
    return results


if __name__ == "__main__":
    main()

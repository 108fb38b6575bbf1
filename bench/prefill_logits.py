"""A generation prefill's last logits on CPU: the parent's strided slice against our gathered rows.

    python -m bench.prefill_logits [--model build/mini-graft] [--batch_size 8] [--repeats 3]

`generate` asks the model for the last position's logits only (`logits_to_keep=1`). The parent
(`Qwen2VLForConditionalGeneration.forward`) hands `lm_head` a strided view, `hidden[:, -1:]`,
and torch's CPU matmul of a strided 3-D bf16 input by weights that need no gradient takes a
reference path; the graft's `forward` gathers the rows into a contiguous tensor first. Weights
need no gradient under PEFT (evaluation during training, `--adapter` loading) or after
`requires_grad_(False)`, so the model is frozen here. Times one prefill forward of `batch_size`
clips both ways (p50 of `repeats` after a warm-up), in bf16 and float32, and the largest difference
between their logits.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import Qwen2VLForConditionalGeneration

from bench.bench import speech
from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
from train.weights.loading import load_graft


def p50_seconds(run, repeats: int) -> tuple[float, torch.Tensor]:
    run()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2], out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/mini-graft"))
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = {"model": str(args.model), "batch_size": args.batch_size, "seconds": args.seconds, "torch": torch.__version__}
    for dtype in (torch.bfloat16, torch.float32):
        model, processor = load_graft(args.model, dtype=dtype)
        model.eval().requires_grad_(False)
        clips = [speech(args.seconds + 0.25 * i) for i in range(args.batch_size)]
        inputs = processor(text=[build_prompt(processor)] * len(clips), audio=clips, sampling_rate=SAMPLING_RATE)
        inputs["input_features"] = inputs["input_features"].to(dtype)
        with torch.no_grad():
            parent, parent_logits = p50_seconds(
                lambda: Qwen2VLForConditionalGeneration.forward(model, **inputs, logits_to_keep=1).logits, args.repeats)
            ours, our_logits = p50_seconds(lambda: model(**inputs, logits_to_keep=1).logits, args.repeats)
        name = str(dtype).removeprefix("torch.")
        difference = (parent_logits.float() - our_logits.float()).abs().max().item()
        results[name] = {"parent_slice_seconds": round(parent, 3), "gathered_seconds": round(ours, 3),
                         "speed-up": round(parent / ours, 2), "max_abs_difference": difference}  # fmt: skip
        print(f"{name}: prefill of {len(clips)} clips, the parent's slice {parent:.3f} s, gathered rows {ours:.3f} s "
              f"({parent / ours:.1f}x); logits differ by at most {difference:.2e}")  # fmt: skip
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()

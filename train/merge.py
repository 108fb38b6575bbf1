"""Merge the trained pieces into a full-precision base and save a complete model folder.

    python -m train.merge --base build/qwen2-vl-7b-audio --projector out/stage1 --adapter out/stage2 \
        --output out/merged [--dtype bfloat16 --max-shard-size 5GB]

The LoRA adapter (with its projector) is applied to the full-precision base, never to a 4-bit
one (merging into 4-bit weights rounds them again: peft #2321). Before writing, the merged
model's logits on a probe prompt with audio must match the unmerged adapter model's within
`--tolerance` (default: 1e-4 in float32, 5e-2 in bfloat16/float16, relative to the largest
logit); otherwise nothing is written. Output: sharded safetensors, config with auto_map and the
ASR pipeline, processor, generation config and the remote code.
"""

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from train.build import save_graft
from train.graft import SAMPLING_RATE, build_prompt
from train.loading import load_graft

DEFAULT_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def probe_inputs(processor, seconds=3.0, seed=0):
    """A fixed prompt with a tone-and-noise clip: enough to exercise audio, projector and LLM."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    clip = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return processor(text=build_prompt(processor) + "the answer", audio=clip, sampling_rate=SAMPLING_RATE)


@torch.no_grad()
def merge(base, projector=None, adapter=None, dtype=torch.float32, tolerance=None):
    """(merged model, processor, relative logit error); raises if the error exceeds the tolerance."""
    if projector is None and adapter is None:
        raise ValueError("Nothing to merge: give --projector and/or --adapter")
    model, processor = load_graft(base, projector, adapter, dtype=dtype)
    inputs = probe_inputs(processor)
    inputs["input_features"] = inputs["input_features"].to(dtype)
    reference = model(**inputs).logits.float()
    merged = model.merge_and_unload() if adapter is not None else copy.deepcopy(model)
    got = merged(**inputs).logits.float()
    error = ((got - reference).abs().max() / reference.abs().max()).item()
    tolerance = DEFAULT_TOLERANCE[dtype] if tolerance is None else tolerance
    if not error <= tolerance:
        raise ValueError(f"Merged logits differ from the adapter model's by {error:.2e} (relative), over {tolerance:.0e}")
    return merged, processor, error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="full-precision graft folder (train.build)")
    parser.add_argument("--projector", help="stage 1 output folder")
    parser.add_argument("--adapter", help="stage 2 output folder (adapter + projector)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--max-shard-size", default="5GB")
    parser.add_argument("--tolerance", type=float)
    args = parser.parse_args(argv)
    model, processor, error = merge(args.base, args.projector, args.adapter, getattr(torch, args.dtype), args.tolerance)
    print(f"merged logits match the adapter model's: max relative difference {error:.2e}")
    save_graft(model, processor, args.output, max_shard_size=args.max_shard_size)
    print(f"saved the merged model to {args.output}")


if __name__ == "__main__":
    main()

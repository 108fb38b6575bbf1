"""Merge the trained pieces into a full-precision base, save a complete model folder, and check it.

    python -m train.merge --base build/qwen2-vl-7b-audio --projector out/stage1 --adapter out/stage2 \
        --output out/merged [--dtype bfloat16 --max_shard_size 5GB]

The LoRA adapter (with its projector) is applied to the full-precision base, never to a 4-bit
one (merging into 4-bit weights rounds them again: peft #2321). The check is made on what was
written: the merged model is dropped, the saved folder is loaded back from disk and its logits on
a probe prompt with audio are compared with those of the base and the pieces loaded apart (the
unmerged model), one model in memory at a time; they must
agree within `--tolerance` (default: 1e-4 in float32, 5e-2 in bfloat16/float16, relative to the
largest logit), else the folder is deleted and the error names the difference. Output: sharded
safetensors, config with auto_map and the ASR pipeline, processor, generation config and the
remote code.
"""

import argparse
import gc
import shutil
from pathlib import Path

import numpy as np
import torch

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt

from .building.folder import save_graft
from .weights.loading import load_graft

DEFAULT_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def probe_inputs(processor, seconds=3.0, seed=0):
    """A fixed prompt with a tone-and-noise clip: enough to exercise audio, projector and LLM."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    clip = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return processor(text=build_prompt(processor) + "the answer", audio=clip, sampling_rate=SAMPLING_RATE)


@torch.no_grad()
def probe_logits(model, processor, dtype) -> torch.Tensor:
    inputs = probe_inputs(processor)
    inputs["input_features"] = inputs["input_features"].to(dtype)
    return model(**inputs).logits.float()


def merge(base, projector=None, adapter=None, dtype=torch.float32):
    """(model, processor): `base` with stage 1's projector and/or stage 2's adapter merged in."""
    if projector is None and adapter is None:
        raise ValueError("Nothing to merge: give --projector and/or --adapter")
    model, processor = load_graft(base, projector, adapter, dtype=dtype)
    return (model.merge_and_unload() if adapter is not None else model), processor


def relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    return ((got - reference).abs().max() / reference.abs().max()).item()


def check_saved(output: Path, base, projector=None, adapter=None, dtype=torch.float32, tolerance=None) -> float:
    """Compare the folder written at `output` with base + pieces loaded apart: the relative logit error, or
    `output` deleted and ValueError when it is over the tolerance. One model is in memory at a time (the
    saved one, then the unmerged one), so a 7B graft is checked in the memory of one copy."""
    reloaded, processor = load_graft(output, dtype=dtype)
    saved_logits = probe_logits(reloaded, processor, dtype)
    del reloaded
    gc.collect()
    unmerged, _ = load_graft(base, projector, adapter, dtype=dtype)
    error = relative_error(saved_logits, probe_logits(unmerged, processor, dtype))
    del unmerged
    gc.collect()
    tolerance = DEFAULT_TOLERANCE[dtype] if tolerance is None else tolerance
    if not error <= tolerance:
        shutil.rmtree(output)
        raise ValueError(
            f"The saved model's logits differ from the unmerged model's by {error:.2e} (relative), over {tolerance:.0e}: "
            f"{output} deleted"
        )
    return error


def merge_and_save(output: Path, base, projector=None, adapter=None, dtype=torch.float32, tolerance=None,
                   max_shard_size="5GB", decoding=None) -> float:  # fmt: skip
    """Merge, save (sharded safetensors), drop the merged model, then `check_saved`; returns the error.
    `decoding` (a function of the generation config) may set the folder's own decoding before it is saved."""
    model, processor = merge(base, projector, adapter, dtype)
    if decoding is not None:
        decoding(model.generation_config)
    save_graft(model, processor, Path(output), max_shard_size=max_shard_size)
    del model
    gc.collect()
    return check_saved(output, base, projector, adapter, dtype, tolerance)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="full-precision graft folder (train.build)")
    parser.add_argument("--projector", help="stage 1 output folder")
    parser.add_argument("--adapter", help="stage 2 output folder (adapter + projector)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--max_shard_size", default="5GB")
    parser.add_argument("--tolerance", type=float)
    args = parser.parse_args(argv)
    error = merge_and_save(args.output, args.base, args.projector, args.adapter, getattr(torch, args.dtype),
                           args.tolerance, args.max_shard_size)  # fmt: skip
    print(f"saved the merged model to {args.output}; reloaded, its logits match the unmerged model's within {error:.2e}")


if __name__ == "__main__":
    main()

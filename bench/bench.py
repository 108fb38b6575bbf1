"""CPU benchmark: the reference way of running the graft against ours, same weights, same audio.

    python -m bench.bench [--model build/mini-graft] [--repeats 3] [--batch_size 8] [--out bench/cpu-results.json]
    python -m bench.bench --tiny      # the code path on a tiny random graft (build/bench-tiny.json, never the tracked file)

(a) reference: every clip padded to 30 s (longer audio cut to 30 s, as the reference model does)
    and 1500 audio tokens in the prompt (`audio_downsample=1`), one clip at a time;
(b) ours: tokens only for real audio at the model's `audio_downsample`, all windows of long clips,
    one clip at a time and batched.
The LLM, encoder and prompt are the same; (a) gets a downsample-1 projector of the same width
(timing does not depend on its values). Decoding is pinned: greedy (`--num_beams 1`) both ways
whatever the folder's generation config says, so figures stay comparable across graft versions;
where the folder ships another beam width, the 5 s clips are timed again with it, labelled. Both ways generate exactly the same number of tokens:
`--new_tokens` (16 by default, so the CPU run stays under 10 minutes), or
`--tokens_per_second` tokens per second of audio. Reports audio tokens per clip, p50 latency, RTFx (seconds of
audio per second of wall time) and peak resident memory per setting; the last line is the
batch-1 latency ratio for 5 s clips, reference / ours.

To stay under 10 minutes on 2 CPU cores: one warm-up per way (at the first length), batched runs
of clips of 30 s or more timed `--long_repeats` times (once by default: a single 8 x 70 s batch
takes over a minute), the 5 s time split from one round in the warm process, and the reference
way timed once per distinct input: it cuts every clip to its first 30 s, so the 70 s clip gives
it exactly the 30 s clip's input and the 30 s figures are reused (`reference_same_as`).
"""

import argparse
import copy
import hashlib
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE, num_audio_tokens
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftProjector
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt, decoding_beams
from train.weights.loading import load_graft

LENGTHS = (2, 5, 15, 30, 70)
TRACKED = Path("bench/cpu-results.json")
TINY = Path("build/tiny-graft")
WINDOW = 30 * SAMPLING_RATE


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets the peak resident set size (VmHWM) of this process.
    Path("/proc/self/clear_refs").write_text("5")


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a voiced tone with a syllable-rate envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * envelope * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def reference_model(model):
    """The same LLM and encoder with a downsample-1 projector (the reference graft's 50 tokens/s)
    and whole 30 s windows through the encoder (`encode_padding=True`). Shallow copies with their
    own module tables: the original model is left untouched."""
    if model.config.audio_downsample == 1 and model.config.encode_padding:
        return model
    config = copy.deepcopy(model.config)
    config.audio_downsample, config.encode_padding = 1, True
    inner = copy.copy(model.model)
    inner._modules = dict(model.model._modules)
    inner.config = config
    inner.audio_projector = Qwen2AudioGraftProjector(config).to(model.dtype)
    reference = copy.copy(model)
    reference._modules = dict(model._modules)
    reference.config = config
    reference.model = inner
    return reference


def run(model, processor, clips, new_tokens, pad_to_30s=False) -> float:
    """Seconds to transcribe `clips` as one batch, generating exactly `new_tokens` tokens."""
    if pad_to_30s:
        clips = [np.pad(c[:WINDOW], (0, WINDOW - len(c[:WINDOW]))) for c in clips]
    started = time.perf_counter()
    inputs = processor(text=[build_prompt(processor)] * len(clips), audio=clips, sampling_rate=SAMPLING_RATE)
    inputs["input_features"] = inputs["input_features"].to(model.dtype)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return time.perf_counter() - started


def split(model, processor, clips, new_tokens, repeats, pad_to_30s=False, warm_up=True) -> dict:
    """p50 seconds of the encoder (with the projector), the prefill (the first forward, encoder
    excluded) and the decode steps (the rest of `generate`) for one batch of `clips`, over
    `repeats` rounds (after a warm-up round unless the process is warm already)."""
    if pad_to_30s:
        clips = [np.pad(c[:WINDOW], (0, WINDOW - len(c[:WINDOW]))) for c in clips]
    inputs = processor(text=[build_prompt(processor)] * len(clips), audio=clips, sampling_rate=SAMPLING_RATE)
    inputs["input_features"] = inputs["input_features"].to(model.dtype)

    def timed(call):
        started = time.perf_counter()
        with torch.no_grad():
            call()
        return time.perf_counter() - started

    parts = {"encoder": [], "prefill": [], "decode": []}
    for _ in range(repeats + warm_up):
        encoder = timed(lambda: model.get_audio_features(inputs["input_features"], inputs["input_features_mask"]))
        forward = timed(lambda: model(**inputs, logits_to_keep=1))
        total = timed(lambda: model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                             do_sample=False))  # fmt: skip
        for name, value in (("encoder", encoder), ("prefill", forward - encoder), ("decode", total - forward)):
            parts[name].append(value)
    return {name: round(statistics.median(values[warm_up:]), 3) for name, values in parts.items()}


def measure(model, processor, clips, new_tokens, repeats, pad_to_30s=False, warm_up=True) -> dict:
    if warm_up:  # once per way and batch size (the first clip length): later lengths find the process warm
        run(model, processor, clips, new_tokens, pad_to_30s)
    reset_peak_rss()
    times = [run(model, processor, clips, new_tokens, pad_to_30s) for _ in range(repeats)]
    p50 = statistics.median(times)
    # The reference way transcribes at most the first 30 s of each clip: count only that.
    audio_seconds = sum(min(len(c), WINDOW) if pad_to_30s else len(c) for c in clips) / SAMPLING_RATE
    return {"p50_s": round(p50, 3), "rtfx": round(audio_seconds / p50, 2), "peak_rss_mib": round(peak_rss_mib()),
            "runs": repeats}  # fmt: skip


def bench_length(model, reference, processor, seconds, repeats, batch_size, new_tokens, warm_up=True,
                 long_repeats=1, reference_seen=None) -> dict:
    """One clip length: reference and ours at batch 1, ours batched. `reference_seen` maps the
    reference way's input (the clip cut to 30 s, and the decode length) to the row that timed it."""
    reference_processor = copy.copy(processor)
    reference_processor.audio_downsample = 1  # 1500 placeholders per 30 s window, as the reference
    clip = speech(seconds)
    row = {"seconds": seconds, "new_tokens": new_tokens,
           "tokens_reference": 1500, "tokens_ours": num_audio_tokens(len(clip), model.config.audio_downsample)}  # fmt: skip
    seen = reference_seen if reference_seen is not None else {}
    key = (hashlib.sha1(clip[:WINDOW].tobytes()).hexdigest(), new_tokens)
    if key in seen:  # the same input as an earlier length's (both cut to the same 30 s): same work
        row["reference_b1"], row["reference_same_as"] = seen[key]["reference_b1"], seen[key]["seconds"]
    else:
        row["reference_b1"] = measure(reference, reference_processor, [clip], new_tokens, repeats, True, warm_up)
        seen[key] = row
    row["ours_b1"] = measure(model, processor, [clip], new_tokens, repeats, warm_up=warm_up)
    batch = [speech(seconds, seed) for seed in range(batch_size)]
    batched_repeats = long_repeats if seconds >= 30 else repeats
    row[f"ours_b{batch_size}"] = measure(model, processor, batch, new_tokens, batched_repeats, warm_up=warm_up)
    if seconds == 5:  # where the time goes, for the clip length the targets name (the process is warm by now)
        row["split"] = {"reference_b1": split(reference, reference_processor, [clip], new_tokens, 1, True, False),
                        "ours_b1": split(model, processor, [clip], new_tokens, 1, warm_up=False),
                        f"ours_b{batch_size}": split(model, processor, batch, new_tokens, 1, warm_up=False)}  # fmt: skip
    return row


def cpu_dtype() -> str:
    """bfloat16 where oneDNN has native bf16 kernels (AVX512-BF16 or AMX); on other CPUs bf16
    matrix products fall back to slow generic code, so float32 is faster there."""
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bfloat16" if native else "float32"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/mini-graft"))
    parser.add_argument("--tiny", action="store_true", help="time a tiny random graft instead (the code path only)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--long_repeats", type=int, default=1, help="timed runs of batches of clips of 30 s or more")
    parser.add_argument("--new_tokens", type=int, default=16)
    parser.add_argument("--tokens_per_second", type=float, help="decode length per second of audio instead")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_beams", type=int, default=1, help="the decoding timed, both ways (default 1, greedy)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"),
                        help="auto: bfloat16 where the CPU has native bf16 matrix units (oneDNN), else float32")
    parser.add_argument("--out", type=Path, help="default bench/cpu-results.json (build/bench-tiny.json with --tiny)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    args.dtype = cpu_dtype() if args.dtype == "auto" else args.dtype
    folder = TINY if args.tiny else args.model
    args.out = args.out or (Path("build/bench-tiny.json") if args.tiny else TRACKED)
    if args.tiny and args.out.resolve() == TRACKED.resolve():
        raise SystemExit(f"--tiny times a random graft: its figures never go to the tracked {TRACKED}")
    if args.tiny and not (folder / "config.json").exists():
        from train.building.tiny import build_tiny

        build_tiny(folder)
    if not (folder / "config.json").exists():
        raise SystemExit(f"{folder} holds no graft: make bench builds build/mini-graft (as make demo does), or pass "
                         "--model FOLDER, or --tiny for the code path alone")  # fmt: skip
    model, processor = load_graft(folder, dtype=getattr(torch, args.dtype))
    shipped = decoding_beams(model.generation_config)
    model.generation_config.num_beams = args.num_beams  # pinned: the reference copy shares this config
    reference = reference_model(model)
    print(f"model: {folder} (audio_downsample {model.config.audio_downsample}, encode_padding "
          f"{model.config.encode_padding}, {model.num_parameters() / 1e6:.0f} M parameters, {args.dtype}, "
          f"{args.num_beams} beam(s); ships {shipped}); torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads, {cpu_name()}")  # fmt: skip
    rows, reference_seen = [], {}
    for seconds in args.lengths:
        new_tokens = round(args.tokens_per_second * seconds) if args.tokens_per_second else args.new_tokens
        rows.append(bench_length(model, reference, processor, seconds, args.repeats, args.batch_size, new_tokens,
                                 warm_up=not rows, long_repeats=args.long_repeats, reference_seen=reference_seen))  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    report(rows, args.batch_size)
    shipped_row = None
    if shipped != args.num_beams and 5 in args.lengths:  # the folder's own decoding, for the 5 s clips
        model.generation_config.num_beams = shipped
        shipped_row = {"num_beams": shipped, **bench_length(model, reference, processor, 5, args.repeats, args.batch_size,
                                                            args.new_tokens, warm_up=True, reference_seen={})}  # fmt: skip
        print(json.dumps(shipped_row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": str(folder), "audio_downsample": model.config.audio_downsample,
            "encode_padding": model.config.encode_padding, "dtype": args.dtype, "cpu": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "transformers": transformers.__version__, "repeats": args.repeats, "long_repeats": args.long_repeats, "batch_size": args.batch_size,
            "new_tokens": args.new_tokens, "tokens_per_second": args.tokens_per_second, "num_beams": args.num_beams,
            "shipped_num_beams": shipped, "wall_seconds": round(time.perf_counter() - began)}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "shipped_decoding_5s": shipped_row}, indent=2) + "\n")
    five = next((r for r in rows if r["seconds"] == 5), rows[0])
    for setting, parts in five.get("split", {}).items():
        print(f"time split, 5 s clips, {setting}: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    ratio = five["reference_b1"]["p50_s"] / five["ours_b1"]["p50_s"]
    print(f"batch-1 latency ratio for {five['seconds']} s clips, reference / ours, {args.num_beams} beam(s): {ratio:.1f}x")
    if shipped_row:
        ratio = shipped_row["reference_b1"]["p50_s"] / shipped_row["ours_b1"]["p50_s"]
        print(f"batch-1 latency ratio for 5 s clips, reference / ours, {shipped} beams (the folder's own decoding): {ratio:.1f}x")


def report(rows, batch_size) -> None:
    key = f"ours_b{batch_size}"
    print("| clip | tokens ref | tokens ours | p50 ref b1 | p50 ours b1 | p50 ours b%d | RTFx ref b1 | RTFx ours b1 "
          "| RTFx ours b%d | batched / ref RTFx | peak MiB ref / ours b1 / ours b%d |" % ((batch_size,) * 3))
    print("|" + "---|" * 11)
    for r in rows:
        ref, one, many = r["reference_b1"], r["ours_b1"], r[key]
        same = f" (= {r['reference_same_as']} s)" if "reference_same_as" in r else ""
        print(f"| {r['seconds']} s | {r['tokens_reference']} | {r['tokens_ours']} | {ref['p50_s']} s{same} | {one['p50_s']} s "
              f"| {many['p50_s']} s | {ref['rtfx']} | {one['rtfx']} | {many['rtfx']} | {many['rtfx'] / ref['rtfx']:.1f}x "
              f"| {ref['peak_rss_mib']} / {one['peak_rss_mib']} / {many['peak_rss_mib']} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""GPU figures of the release graft architecture with random weights (nothing is downloaded).

    python -m bench.gpu --out bench/gpu-results.json            # on a GPU: the 7B graft of config.json
    python -m bench.gpu --tiny --device cpu --out /tmp/gpu.json  # the same code on the tiny graft (tests)

Builds Qwen2-VL-7B + whisper-large-v3-turbo encoder (the root `config.json`, 8.9 B parameters)
with random bf16 weights on the device and measures, with the decode length fixed at
`--tokens_per_second` (3) tokens per second of audio:

- `rtfx`: RTFx (seconds of audio per second of wall time) of `generate` at each `--batch_sizes`,
  transformers' default dynamic cache;
- `compiled`: the same with a static cache and `torch.compile` of the decode step
  (`cache_implementation="static"`), at the smallest and largest batch, and the share of
  generated tokens equal to the default's;
- `split`: where the time of one batch goes: encoder (with the projector), prefill (the first
  forward without the encoder) and decode (the rest of `generate`), at the smallest and largest batch;
- `bf16_peak`: peak GPU memory of batch-1 transcription in bf16 (weights included);
- `nf4`: peak GPU memory of batch-1 transcription with the LLM in NF4 4-bit and no vision tower
  (`use_vision_tower=False`), loaded from a saved copy through `from_pretrained`; with
  `--nf4_lm_head` also with `lm_head` in 4-bit;
- `qlora`: on that 4-bit model, one stage-2 QLoRA step (LoRA r=64 on every LLM projection + the
  projector, gradient checkpointing, a 30 s clip with a 90-token answer): time and peak memory.

Memory is `torch.cuda.max_memory_allocated` (tensors; the CUDA context, about 0.5 GB, comes on
top) in GB (1e9 bytes, the unit of the targets) with `max_memory_reserved` beside it. Results
are written to `--out` after every part, so a run cut short keeps what it measured.

Token ids: prompts are built by the tiny offline tokenizer and its special tokens mapped to the
release ids (`<|AUDIO|>` -> 151658, ...); the text tokens are bytes, valid ids of any vocabulary.
"""

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from bench.bench import peak_rss_mib, reset_peak_rss, speech
from train.building.folder import make_processor, save_graft
from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
from train.building.release import release_config
from train.building.tiny import SPECIAL_TOKENS, build_tiny, tiny_tokenizer

PARTS = ("rtfx", "compiled", "split", "bf16_peak", "nf4", "qlora")
# Qwen2-VL's ids of the special tokens the prompts use.
RELEASE_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
               "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
               "<|audio_bos|>": 151657, "<|AUDIO|>": 151658, "<|audio_eos|>": 151659}  # fmt: skip


class Device:
    def __init__(self, name: str):
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()

    def peak(self) -> dict:
        """Peak memory since `reset_peak`: GPU tensors (CUDA) or the process's resident set (CPU)."""
        if not self.cuda:
            return {"peak_gb": round(peak_rss_mib() * 2**20 / 1e9, 2)}
        allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        return {"peak_gb": round(allocated / 1e9, 2), "peak_gib": round(allocated / 2**30, 2),
                "reserved_gb": round(reserved / 1e9, 2)}  # fmt: skip


class Prompts:
    """Batches of transcription prompts with the model's token ids."""

    def __init__(self, config, tiny: bool):
        tokenizer = tiny_tokenizer()
        self.processor = make_processor(tokenizer, config)
        self.remap = None
        if not tiny:
            table = torch.arange(max(tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS) + 1)
            for token, release_id in RELEASE_IDS.items():
                table[tokenizer.convert_tokens_to_ids(token)] = release_id
            self.remap = table

    def __call__(self, clips, device, dtype, answer: int = 0):
        prompt = build_prompt(self.processor) + "a" * answer
        inputs = self.processor(text=[prompt] * len(clips), audio=clips, sampling_rate=SAMPLING_RATE)
        if self.remap is not None:
            inputs["input_ids"] = self.remap[inputs["input_ids"]]
        inputs["input_features"] = inputs["input_features"].to(dtype)
        return {k: v.to(device) for k, v in inputs.items()}


def timed(device: Device, call) -> float:
    device.sync()
    started = time.perf_counter()
    with torch.no_grad():
        call()
    device.sync()
    return time.perf_counter() - started


def generate(model, inputs, new_tokens, **kwargs):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kwargs)


def compiled_kwargs(device: Device) -> dict:
    """Static cache with the decode step compiled (CUDA graphs on a GPU; plain inductor on CPU)."""
    config = transformers.CompileConfig(fullgraph=True, mode="reduce-overhead" if device.cuda else "default")
    config._compile_all_devices = not device.cuda  # transformers compiles only on accelerators unless told
    return {"cache_implementation": "static", "compile_config": config}


def rtfx(model, prompts, device, seconds, batch, new_tokens, repeats, **kwargs) -> dict:
    clips = [speech(seconds, seed) for seed in range(batch)]
    started = time.perf_counter()
    inputs = prompts(clips, device.device, model.dtype)
    preprocess = time.perf_counter() - started
    tokens = generate(model, inputs, new_tokens, **kwargs)  # warm-up (and compilation)
    p50 = statistics.median(timed(device, lambda: generate(model, inputs, new_tokens, **kwargs)) for _ in range(repeats))
    return {"batch": batch, "p50_s": round(p50, 3), "rtfx": round(batch * seconds / p50, 1),
            "cpu_preprocess_s": round(preprocess, 3), "tokens": tokens.cpu()}  # fmt: skip


def split(model, prompts, device, seconds, batch, new_tokens, repeats) -> dict:
    inputs = prompts([speech(seconds, seed) for seed in range(batch)], device.device, model.dtype)
    parts = {"encoder": [], "prefill": [], "decode": []}
    for _ in range(repeats + 1):  # the first round warms up
        encoder = timed(device, lambda: model.get_audio_features(inputs["input_features"], inputs["input_features_mask"]))
        forward = timed(device, lambda: model(**inputs, logits_to_keep=1))
        total = timed(device, lambda: generate(model, inputs, new_tokens))
        for name, value in (("encoder", encoder), ("prefill", forward - encoder), ("decode", total - forward)):
            parts[name].append(value)
    return {"batch": batch, **{name: round(statistics.median(values[1:]), 4) for name, values in parts.items()}}


def peak_transcribing(model, prompts, device, seconds, new_tokens) -> dict:
    inputs = prompts([speech(seconds)], device.device, model.dtype)
    device.reset_peak()
    with torch.no_grad():
        generate(model, inputs, new_tokens)
    device.sync()
    return device.peak()


def load_nf4(folder, device, dtype, lm_head_4bit=False):
    from train.weights.quantize import NOT_QUANTIZED, load_4bit, nf4_config

    skip = [name for name in NOT_QUANTIZED if not (lm_head_4bit and name == "lm_head")]
    device.reset_peak()
    started = time.perf_counter()
    # train.weights.quantize's loader: the QLoRA step after the eval forwards must be able to train.
    model = load_4bit(folder, nf4_config(dtype, skip), dtype=dtype, use_vision_tower=False,
                      device_map={"": device.device}).eval()  # fmt: skip
    device.sync()
    load = {"load_s": round(time.perf_counter() - started, 1), "load_peak_gb": device.peak()["peak_gb"]}
    footprint = model.get_memory_footprint()
    return model, {**load, "weights_gb": round(footprint / 1e9, 2), "weights_bytes": footprint}


def qlora_step(model, prompts, device, dtype, seconds=30, answer_tokens=90) -> dict:
    """One optimizer step of stage 2 on the loaded 4-bit model: LoRA r=64, gradient checkpointing."""
    from train.stage2_qlora import Stage2Arguments, add_lora

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = add_lora(model, Stage2Arguments(model_path=""))  # the 7B recipe's LoRA: r=64, alpha 16, dropout 0.05
    model.train()
    batch = prompts([speech(seconds)], device.device, dtype, answer=answer_tokens)
    labels = batch["input_ids"].clone()
    labels[:, :-answer_tokens] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    losses = []

    def step():
        with torch.enable_grad():
            loss = model(**batch, labels=labels).loss
            loss.backward()
        losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    device.reset_peak()
    step()  # warm-up (and the optimizer's state)
    seconds_taken = statistics.median(timed(device, step) for _ in range(3))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    return {"p50_s": round(seconds_taken, 3), **device.peak(), "clip_seconds": seconds, "answer_tokens": answer_tokens,
            "trainable_parameters": trainable, "trainable_parameters_m": round(trainable / 1e6, 1),
            "losses": [round(x, 4) for x in losses],
            "lora_b_trained": bool(lora_b) and all(bool(p.detach().abs().sum() > 0) for p in lora_b)}  # fmt: skip


def build_model(args, device, dtype, scratch: Path):
    if args.tiny:
        model, _ = build_tiny(scratch / "tiny", args.audio_downsample, encode_padding=not args.real_frames)
        return model.to(device.device, dtype).eval()
    config = release_config(audio_downsample=args.audio_downsample)
    config.encode_padding = not args.real_frames
    torch.set_default_dtype(dtype)
    with device.device:
        model = Qwen2AudioGraftForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    return model.eval()


def measure_bf16(model, prompts, device, args, new_tokens, results, save):
    if "rtfx" in args.parts:
        runs = [rtfx(model, prompts, device, args.seconds, b, new_tokens, args.repeats) for b in args.batch_sizes]
        results["rtfx"] = [{k: v for k, v in run.items() if k != "tokens"} for run in runs]
        save(results)
    if "split" in args.parts:
        batches = sorted({min(args.batch_sizes), max(args.batch_sizes)})
        results["split"] = [split(model, prompts, device, args.seconds, b, new_tokens, args.repeats) for b in batches]
        save(results)
    if "bf16_peak" in args.parts:
        results["bf16_b1"] = {"weights_gb": round(model.get_memory_footprint() / 1e9, 2),
                              **peak_transcribing(model, prompts, device, args.seconds, new_tokens)}  # fmt: skip
        save(results)


def measure_compiled(model, prompts, device, args, new_tokens, results, save):
    """Static cache + compiled decode at the largest batch, then at batch 1 (each shape compiles once)."""
    results["compiled"] = []
    for b in sorted({min(args.batch_sizes), max(args.batch_sizes)}, reverse=True):
        clips = [speech(args.seconds, s) for s in range(b)]
        reference = generate(model, prompts(clips, device.device, model.dtype), new_tokens)
        started = time.perf_counter()
        run = rtfx(model, prompts, device, args.seconds, b, new_tokens, args.repeats, **compiled_kwargs(device))
        run["warm_up_and_compile_s"] = round(time.perf_counter() - started - run["p50_s"] * args.repeats, 1)
        run["same_tokens"] = round(float((run.pop("tokens") == reference.cpu()).float().mean()), 3)
        results["compiled"].append(run)
        save(results)


def measure_nf4(folder, prompts, device, dtype, args, new_tokens, results, save):
    model, loaded = load_nf4(folder, device, dtype)
    results["nf4_audio_only_b1"] = {**loaded, **peak_transcribing(model, prompts, device, args.seconds, new_tokens)}
    save(results)
    if "qlora" in args.parts:
        results["qlora_step"] = qlora_step(model, prompts, device, dtype)
        save(results)
    del model
    if args.nf4_lm_head:
        model, loaded = load_nf4(folder, device, dtype, lm_head_4bit=True)
        results["nf4_lm_head_audio_only_b1"] = {**loaded, **peak_transcribing(model, prompts, device, args.seconds,
                                                                              new_tokens)}  # fmt: skip
        save(results)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny graft instead of the 7B (code-path check)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length for RTFx")
    parser.add_argument("--tokens_per_second", type=float, default=3.0)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--audio_downsample", type=int, default=1, help="the 7B graft's audio_downsample")
    parser.add_argument("--real_frames", action="store_true", help="encode_padding=False: encode real mel frames only")
    parser.add_argument("--nf4_lm_head", action="store_true", help="also measure nf4 with lm_head in 4-bit")
    parser.add_argument("--out", type=Path, default=Path("bench/gpu-results.json"))
    args = parser.parse_args(argv)
    device, dtype = Device(args.device), torch.bfloat16
    new_tokens = round(args.tokens_per_second * args.seconds)
    results = {"device": torch.cuda.get_device_name() if device.cuda else "cpu", "torch": torch.__version__,
               "transformers": transformers.__version__, "tokens_per_second": args.tokens_per_second,
               "clip_seconds": args.seconds, "new_tokens": new_tokens, "audio_downsample": args.audio_downsample,
               "encode_padding": not args.real_frames}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(results):
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({k: v for k, v in results.items() if k not in ("device", "torch", "transformers")}), flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        model = build_model(args, device, dtype, Path(scratch))
        prompts = Prompts(model.config, args.tiny)
        results["parameters_b"] = round(model.num_parameters() / 1e9, 3)
        results["bf16_weights_gb"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9, 2)
        measure_bf16(model, prompts, device, args, new_tokens, results, save)
        if "nf4" in args.parts or "qlora" in args.parts:
            folder = Path(scratch) / "random-graft"
            model.model.visual, model.config.use_vision_tower = None, False  # audio-only copy: less to write
            save_graft(model, prompts.processor, folder, max_shard_size="5GB")
            del model
            if device.cuda:
                torch.cuda.empty_cache()
            measure_nf4(folder, prompts, device, dtype, args, new_tokens, results, save)
            model = None
        if "compiled" in args.parts:  # last: compiling takes minutes and the figures above matter more
            model = model if model is not None else build_model(args, device, dtype, Path(scratch))
            measure_compiled(model, prompts, device, args, new_tokens, results, save)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

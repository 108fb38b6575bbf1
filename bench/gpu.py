"""GPU figures of the release graft architecture with random weights (nothing is downloaded).

    python -m bench.gpu --out bench/gpu-results.json            # on a GPU: the 7B graft of config.json
    python -m bench.gpu --tiny --device cpu --out /tmp/gpu.json  # the same code on the tiny graft (tests)

Builds Qwen2-VL-7B + whisper-large-v3-turbo encoder (the root `config.json`, 8.9 B parameters)
with random bf16 weights on the device and measures, with the decode length fixed at
`--tokens-per-second` (3) tokens per second of audio:

- RTFx (seconds of audio per second of wall time) of `generate` at each `--batch-sizes`;
- the time split of one batch-1 clip between encoder, prefill and decode;
- peak GPU memory of batch-1 transcription in bf16 (weights included);
- peak GPU memory of batch-1 transcription with the LLM in NF4 4-bit and no vision tower
  (`use_vision_tower=False`), loaded from a saved copy through `from_pretrained`;
- one stage-2 QLoRA training step (LoRA r=64 on the 4-bit LLM + the projector, gradient
  checkpointing, a 30 s clip with a 90-token answer): time and peak memory.

Token ids: prompts are built by the tiny offline tokenizer and its special tokens mapped to the
release ids (`<|AUDIO|>` -> 151658, ...); the text tokens are bytes, valid ids of any vocabulary.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from bench.bench import peak_rss_mib, reset_peak_rss, speech
from train.build import SPECIAL_TOKENS, build_tiny, make_processor, release_config, save_graft, tiny_tokenizer
from train.graft import SAMPLING_RATE, Qwen2AudioGraftForConditionalGeneration, build_prompt

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
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()

    def peak_gib(self) -> float:
        """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU)."""
        return round(torch.cuda.max_memory_allocated() / 2**30 if self.cuda else peak_rss_mib() / 1024, 2)


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


def generate(model, inputs, new_tokens):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)


def rtfx(model, prompts, device, seconds, batch, new_tokens, repeats) -> dict:
    clips = [speech(seconds, seed) for seed in range(batch)]
    inputs = prompts(clips, device.device, model.dtype)
    generate(model, inputs, new_tokens)  # warm-up
    p50 = statistics.median(timed(device, lambda: generate(model, inputs, new_tokens)) for _ in range(repeats))
    return {"batch": batch, "p50_s": round(p50, 3), "rtfx": round(batch * seconds / p50, 1)}


def split(model, prompts, device, seconds, new_tokens, repeats) -> dict:
    inputs = prompts([speech(seconds)], device.device, model.dtype)
    parts = {"encoder": [], "prefill": [], "decode": []}
    for _ in range(repeats + 1):  # the first round warms up
        encoder = timed(device, lambda: model.get_audio_features(inputs["input_features"], inputs["input_features_mask"]))
        forward = timed(device, lambda: model(**inputs, logits_to_keep=1))
        total = timed(device, lambda: generate(model, inputs, new_tokens))
        for name, value in (("encoder", encoder), ("prefill", forward - encoder), ("decode", total - forward)):
            parts[name].append(value)
    return {name: round(statistics.median(values[1:]), 4) for name, values in parts.items()}


def peak_transcribing(model, prompts, device, seconds, new_tokens) -> float:
    inputs = prompts([speech(seconds)], device.device, model.dtype)
    device.reset_peak()
    with torch.no_grad():
        generate(model, inputs, new_tokens)
    device.sync()
    return device.peak_gib()


def nf4(compute_dtype):
    from train.stage2_qlora import NOT_QUANTIZED

    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=NOT_QUANTIZED,
    )  # fmt: skip


def qlora_step(folder, prompts, device, dtype, seconds=30, answer_tokens=90) -> dict:
    """One optimizer step of stage 2 on a 4-bit LLM with LoRA r=64 and gradient checkpointing."""
    from types import SimpleNamespace

    from train.stage2_qlora import LLM_TARGETS, add_lora, keep_cpu_4bit_trainable

    device.reset_peak()
    model = Qwen2AudioGraftForConditionalGeneration.from_pretrained(
        folder, dtype=dtype, quantization_config=nf4(dtype), use_vision_tower=False, device_map={"": device.device}
    )
    keep_cpu_4bit_trainable(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = add_lora(model, SimpleNamespace(lora_r=64, lora_alpha=16, lora_dropout=0.05, lora_target_modules=LLM_TARGETS))
    model.train()
    batch = prompts([speech(seconds)], device.device, dtype, answer=answer_tokens)
    labels = batch["input_ids"].clone()
    labels[:, :-answer_tokens] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.enable_grad():
            model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (and the optimizer's state)
    seconds_taken = statistics.median(timed(device, step) for _ in range(3))
    return {"p50_s": round(seconds_taken, 3), "peak_gib": device.peak_gib(), "clip_seconds": seconds,
            "answer_tokens": answer_tokens}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny graft instead of the 7B (code-path check)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length for RTFx")
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/gpu-results.json"))
    args = parser.parse_args(argv)
    device, dtype = Device(args.device), torch.bfloat16
    new_tokens = round(args.tokens_per_second * args.seconds)
    results = {"device": torch.cuda.get_device_name() if device.cuda else "cpu", "torch": torch.__version__,
               "transformers": transformers.__version__, "tokens_per_second": args.tokens_per_second,
               "clip_seconds": args.seconds}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            model, _ = build_tiny(Path(scratch) / "tiny")
            model = model.to(device.device, dtype)
        else:
            device.reset_peak()
            config = release_config()
            torch.set_default_dtype(dtype)
            with device.device:
                model = Qwen2AudioGraftForConditionalGeneration(config).eval()
            torch.set_default_dtype(torch.float32)
        model.eval()
        prompts = Prompts(model.config, args.tiny)
        results["parameters_b"] = round(model.num_parameters() / 1e9, 3)
        results["bf16_weights_gib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30, 2)
        results["rtfx"] = [rtfx(model, prompts, device, args.seconds, b, new_tokens, args.repeats) for b in args.batch_sizes]
        print(json.dumps(results["rtfx"]), flush=True)
        results["split_b1"] = split(model, prompts, device, args.seconds, new_tokens, args.repeats)
        results["bf16_b1_peak_gib"] = peak_transcribing(model, prompts, device, args.seconds, new_tokens)
        print(json.dumps({k: results[k] for k in ("split_b1", "bf16_b1_peak_gib")}), flush=True)
        folder = Path(scratch) / "random-graft"
        save_graft(model, prompts.processor, folder)
        del model
        if device.cuda:
            torch.cuda.empty_cache()
        audio_only = Qwen2AudioGraftForConditionalGeneration.from_pretrained(
            folder, dtype=dtype, quantization_config=nf4(dtype), use_vision_tower=False, device_map={"": device.device}
        ).eval()
        results["nf4_audio_only_b1_peak_gib"] = peak_transcribing(audio_only, prompts, device, args.seconds, new_tokens)
        del audio_only
        results["qlora_step"] = qlora_step(folder, prompts, device, dtype)
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

"""Where a mini-graft training step's time goes: encoder, LLM forward, backward, and the batch's shape.

    python -m bench.step_profile --model build/mini-base --data build/corpus/train.jsonl [--lora_r 11] [--steps 6] [--compile]

Loads the graft as stage 2 trains it (frozen weights in bf16 where the CPU has it, LoRA and the
projector in float32 under autocast), takes rows spread over the whole manifest, joins some as the
recipe does (`--join_clips`), draws length-grouped batches like the Trainer, and times each part of
a step with the others held apart, the optimizer's (gradient clipping and AdamW) included. Prints
the mean seconds per part, the prompt, audio and answer tokens per item, the share of padding and
the mean loss (to compare `--compile`, which compiles the LLM with dynamic shapes, with eager).
"""

import argparse
import time

import numpy as np
import torch

from train.stages.data import JoinedClips, SpeechCollator, SpeechDataset, load_rows
from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION
from train.weights.loading import load_graft
from train.weights.precision import keep_trainable_float32, resolve_precision


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--lora_r", type=int, default=11)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--join_clips", type=float, default=0.1, help="as the recipe (mini_stage2.yaml); 0 for none")
    parser.add_argument("--join_max_clips", type=int, default=3)
    parser.add_argument("--join_max_seconds", type=float, default=20.0)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the LLM (dynamic shapes); the first step's time then includes compiling")
    return parser.parse_args(argv)


def lora_model(model_path: str, rank: int, dtype):
    from peft import LoraConfig, get_peft_model

    from train.stage2_qlora import LLM_TARGETS

    model, processor = load_graft(model_path, dtype=dtype)
    for parameter in model.parameters():
        parameter.requires_grad = False
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LLM_TARGETS, modules_to_save=["audio_projector"])
    model = get_peft_model(model, config)
    keep_trainable_float32(model)
    return model.train(), processor


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    dtype = resolve_precision("auto", use_cpu=True)
    model, processor = lora_model(args.model, args.lora_r, dtype)
    rows = load_rows(args.data)
    dataset = SpeechDataset(rows, processor.max_audio_seconds, limit=args.batch_size * (args.steps + 1) * 4, spread=True)
    if args.join_clips:
        dataset = JoinedClips(dataset, args.join_clips, args.join_max_clips, args.join_max_seconds)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5, weight_decay=0.0)
    order = np.argsort(dataset.lengths)  # length-grouped, as train_sampling_strategy group_by_length
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    pick = np.random.default_rng(0).choice(len(batches), size=args.steps + 1, replace=False)
    collator = SpeechCollator(processor, args.instruction)
    inner = model.base_model.model
    if args.compile:
        inner.model.language_model = torch.compile(inner.model.language_model, dynamic=True)
    first_step, losses = 0.0, []
    parts = {"collate": [], "encoder": [], "projector+LLM forward": [], "backward": [], "optimizer": []}
    shapes = {"prompt": [], "audio": [], "answer": [], "padding": []}
    for n, b in enumerate(pick):
        batch, t_collate = timed(lambda: collator([dataset[int(i)] for i in batches[b]]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            with torch.no_grad():
                _, t_encoder = timed(lambda: inner.model.encode_audio(batch["input_features"], batch["input_features_mask"]))
            out, t_forward = timed(lambda: model(**batch))
        _, t_backward = timed(lambda: out.loss.backward())
        _, t_optimizer = timed(lambda: (torch.nn.utils.clip_grad_norm_(trained, 1.0), optimizer.step()))
        optimizer.zero_grad(set_to_none=True)
        if n == 0:
            first_step = t_collate + t_forward + t_backward + t_optimizer  # the forward holds the encoder
            continue  # the first step warms up the kernels (and compiles, with --compile)
        losses.append(float(out.loss.detach()))
        for key, value in zip(parts, (t_collate, t_encoder, t_forward - t_encoder, t_backward, t_optimizer)):
            parts[key].append(value)
        real = batch["attention_mask"].sum(-1)
        answer = (batch["labels"] != -100).sum(-1)
        audio = (batch["input_ids"] == inner.config.audio_token_id).sum(-1)
        shapes["prompt"].append(float((real - answer - audio).float().mean()))
        shapes["audio"].append(float(audio.float().mean()))
        shapes["answer"].append(float(answer.float().mean()))
        shapes["padding"].append(1 - float(real.sum()) / batch["attention_mask"].numel())
    seconds = {key: float(np.mean(values)) for key, values in parts.items()}
    total = sum(seconds.values())
    print(f"{args.steps} batches of {args.batch_size}, LoRA r={args.lora_r}, frozen weights in {dtype}"
          f"{', the LLM compiled' if args.compile else ''}; the first step (not counted) {first_step:.1f} s")
    for key, value in seconds.items():
        print(f"  {key:24} {value:6.2f} s  ({value / total:.0%})")
    print(f"  {'step':24} {total:6.2f} s")
    per_item = {key: float(np.mean(values)) for key, values in shapes.items()}
    print("per item: " + ", ".join(f"{k} {v:.1f} tokens" for k, v in per_item.items() if k != "padding")
          + f"; padding {per_item['padding']:.0%} of the batch")
    print(f"mean loss {np.mean(losses):.4f}")
    return {"seconds": seconds, "step_seconds": total, "per_item": per_item, "first_step_seconds": first_step,
            "mean_loss": float(np.mean(losses))}  # fmt: skip


if __name__ == "__main__":
    main()

"""Stage 2 under torch's FSDP2 (`fully_shard`) on CPU processes (gloo), against one process unsharded.

accelerate 1.15 turns FSDP on only for accelerator devices (docs/training.md quotes why), so on a
CPU-only machine this drives FSDP2 itself, the engine that accelerate's `fsdp_version: 2` wraps: each
LLM decoder layer, then the whole graft, is sharded over the processes, frozen weights and LoRA
alike. The steps are stage 2's own pieces (`load_graft`, `add_lora`, `SpeechCollator`, the
projector's learning-rate groups) in a plain loop, on a fixed order of clips: step `s` reads the
global batch of `batch_size` clips from `s * batch_size`, each process its slice, so that one
process taking the slices in turn (gradient accumulation, the reference) does the same arithmetic.
At the end the full state dict is gathered and rank 0 saves the adapter, as `Trainer` does under FSDP.

    python -m torch.distributed.run --nproc_per_node 2 -m bench.fsdp_cpu --graft G --data train.jsonl --out DIR
    python -m bench.fsdp_cpu --graft G --data train.jsonl --out REF        # one process: the reference

Prints each step's loss (averaged over the processes) and writes `DIR/steps.json`.
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import set_seed

from train.stages.common import parameter_groups
from train.stages.data import SpeechCollator, SpeechDataset, load_rows
from train.stages.stage2_qlora import Stage2Arguments, add_lora
from train.weights.loading import load_graft
from train.weights.precision import keep_trainable_float32


def shard(model, world_size: int):
    """FSDP2 over `world_size` CPU processes: every LLM decoder layer a unit of its own, then the rest."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model.get_base_model().model.language_model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def held_here(model) -> dict:
    """How many parameters are sharded (DTensors), and the share of all weights this process holds."""
    from torch.distributed.tensor import DTensor

    parameters = list(model.parameters())
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in parameters)
    return {"sharded_parameters": sum(isinstance(p, DTensor) for p in parameters),
            "parameters": len(parameters), "local_share": round(local / sum(p.numel() for p in parameters), 4)}  # fmt: skip


def full_state_dict(model, sharded: bool) -> dict:
    """The whole state dict on rank 0 (every process takes part in gathering it; the others get {})."""
    if not sharded:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graft", required=True, help="graft folder (train.build or train.building.tiny)")
    parser.add_argument("--data", required=True, help="training manifest (.jsonl with audio and text)")
    parser.add_argument("--out", type=Path, required=True, help="where the adapter and steps.json go")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4, help="clips per step over all processes")
    parser.add_argument("--slice_size", type=int, default=2, help="clips per forward pass")
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--projector_learning_rate", type=float, default=0.02)
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    world_size, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if args.batch_size % (args.slice_size * world_size):
        parser.error(f"--batch_size {args.batch_size} does not split into slices of {args.slice_size} over "
                     f"{world_size} processes")
    if world_size > 1:
        dist.init_process_group("gloo")
    set_seed(args.seed)  # the same LoRA initialization in every process and in the reference
    model, processor = load_graft(args.graft, dtype=torch.float32)
    stage = Stage2Arguments(model_path=args.graft, lora_r=args.lora_r, lora_dropout=0.0, load_in_4bit=False)
    model = add_lora(model, stage)
    keep_trainable_float32(model)
    model.train()
    if world_size > 1:
        model = shard(model, world_size)
    decay = {n for n, p in model.named_parameters() if p.requires_grad and "bias" not in n}
    optimizer = torch.optim.AdamW(parameter_groups(model, decay, 0.0, args.learning_rate, args.projector_learning_rate))

    clips = SpeechDataset(load_rows(args.data), max_seconds=processor.max_audio_seconds)
    collate = SpeechCollator(processor)
    per_process = args.batch_size // (args.slice_size * world_size)  # slices each process accumulates
    mine = range(rank * per_process, (rank + 1) * per_process)  # one process: every slice in turn
    losses = []
    for step in range(args.steps):
        start = step * args.batch_size
        total = torch.zeros(())
        for part in mine:
            items = [clips[(start + part * args.slice_size + i) % len(clips)] for i in range(args.slice_size)]
            loss = model(**collate(items)).loss / per_process
            loss.backward()
            total += loss.detach()
        if world_size > 1:  # FSDP averaged the gradients over the processes; the loss for the log alike
            dist.all_reduce(total)
            total /= world_size
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(total.item(), 6))
        if rank == 0:
            print(f"step {step + 1}: loss {losses[-1]:.6f} ({world_size} process(es))", flush=True)

    state = full_state_dict(model, world_size > 1)
    if rank == 0:
        model.save_pretrained(args.out, state_dict=state)
        (args.out / "steps.json").write_text(json.dumps({"world_size": world_size, "losses": losses,
                                                         **held_here(model)}) + "\n")  # fmt: skip
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return losses


if __name__ == "__main__":
    main()

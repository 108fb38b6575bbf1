"""Stage 2 sharded over CPU processes (gloo), by FSDP2 or DeepSpeed ZeRO-3, against one process unsharded.

accelerate 1.15 turns FSDP and DeepSpeed on only for accelerator devices (docs/training.md quotes
why), so on a CPU-only machine this drives the engines themselves:

- `--engine fsdp2`: torch's `fully_shard`, what accelerate's `fsdp_version: 2` wraps; each LLM
  decoder layer, then the whole graft, is sharded over the processes, frozen weights and LoRA alike;
- `--engine zero3`: `deepspeed.initialize` with ZeRO stage 3 (parameters, gradients and optimizer
  state partitioned), on DeepSpeed's CPU accelerator.

The steps are stage 2's own pieces (`load_graft`, `add_lora`, `SpeechCollator`, the projector's
learning-rate groups) in a plain loop, on a fixed order of clips: step `s` reads the global batch of
`batch_size` clips from `s * batch_size` in slices of `slice_size`, each process its share of the
slices, so that one process taking every slice in turn (gradient accumulation, the reference) does
the same arithmetic: the mean of the slices' losses. At the end the trained weights are gathered
whole and rank 0 saves the adapter, as `Trainer` does under FSDP and ZeRO-3.

    python -m torch.distributed.run --nproc_per_node 2 -m bench.sharded_cpu --engine fsdp2 --graft G --data train.jsonl --out DIR
    python -m bench.sharded_cpu --graft G --data train.jsonl --out REF     # one process, no engine: the reference

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
from train.stage2_qlora import Stage2Arguments, add_lora
from train.weights.loading import load_graft
from train.weights.precision import keep_trainable_float32


class Plain:
    """One process, nothing sharded: the reference. Also FSDP2's loop, which differs only in `shard`."""

    def __init__(self, model, optimizer, slices: int):
        self.model, self.optimizer, self.slices = model, optimizer, slices

    def backward(self, loss):
        (loss / self.slices).backward()  # the mean over this process's slices; FSDP2 averages over processes

    def step(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def trained_state(self) -> dict:
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    def held_here(self) -> dict:
        return {"sharded_parameters": 0, "local_share": 1.0}


class FSDP2(Plain):
    def __init__(self, model, optimizer_for, slices: int, world_size: int):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world_size,))
        for layer in model.get_base_model().model.language_model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        super().__init__(model, optimizer_for(model), slices)

    def trained_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # every process takes part in the gathering (of the trained weights only, not the frozen graft);
        # with cpu_offload only rank 0 keeps the result
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        whole = get_model_state_dict(self.model, options=options)
        return {n: whole[n] for n, p in self.model.named_parameters() if p.requires_grad and n in whole}

    def held_here(self) -> dict:
        from torch.distributed.tensor import DTensor

        parameters = list(self.model.parameters())
        local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in parameters)
        return {"sharded_parameters": sum(isinstance(p, DTensor) for p in parameters),
                "local_share": round(local / sum(p.numel() for p in parameters), 4)}  # fmt: skip


class ZeRO3(Plain):
    def __init__(self, model, optimizer_for, slices: int, world_size: int, slice_size: int):
        import deepspeed

        config = {"train_micro_batch_size_per_gpu": slice_size, "gradient_accumulation_steps": slices,
                  "train_batch_size": slice_size * slices * world_size, "zero_optimization": {"stage": 3},
                  "steps_per_print": 10**9}  # fmt: skip
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer_for(model), config=config)
        super().__init__(engine, optimizer, slices)

    def backward(self, loss):
        self.model.backward(loss)  # DeepSpeed divides by the accumulation steps itself
        self.model.step()  # steps the optimizer at the end of the accumulation only

    def step(self):
        pass

    def trained_state(self) -> dict:
        import deepspeed

        trained = [(n, p) for n, p in self.model.module.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters([p for _, p in trained]):
            return {n: p.detach().clone() for n, p in trained}

    def held_here(self) -> dict:
        parameters = list(self.model.module.parameters())
        partitioned = [p for p in parameters if hasattr(p, "ds_tensor")]
        whole = sum(p.ds_numel if hasattr(p, "ds_tensor") else p.numel() for p in parameters)
        local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in parameters)
        return {"sharded_parameters": len(partitioned), "local_share": round(local / whole, 4)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("fsdp2", "zero3"), default="fsdp2", help="with several processes")
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

    def optimizer_for(model):
        # no weight decay, so no split by decay: one group for LoRA, one for the projector
        return torch.optim.AdamW(parameter_groups(model, set(), 0.0, args.learning_rate, args.projector_learning_rate))

    slices = args.batch_size // (args.slice_size * world_size)  # slices each process accumulates
    if world_size == 1:
        engine = Plain(model, optimizer_for(model), slices)
    elif args.engine == "fsdp2":
        engine = FSDP2(model, optimizer_for, slices, world_size)
    else:
        engine = ZeRO3(model, optimizer_for, slices, world_size, args.slice_size)

    clips = SpeechDataset(load_rows(args.data), max_seconds=processor.max_audio_seconds)
    collate = SpeechCollator(processor)
    losses = []
    for step in range(args.steps):
        start, total = step * args.batch_size, torch.zeros(())
        for part in range(rank * slices, (rank + 1) * slices):  # one process: every slice in turn
            items = [clips[(start + part * args.slice_size + i) % len(clips)] for i in range(args.slice_size)]
            loss = engine.model(**collate(items)).loss
            engine.backward(loss)
            total += loss.detach() / slices
        engine.step()
        if world_size > 1:  # the engine averaged the gradients over the processes; the logged loss alike
            dist.all_reduce(total)
            total /= world_size
        losses.append(round(total.item(), 6))
        if rank == 0:
            print(f"step {step + 1}: loss {losses[-1]:.6f} ({world_size} process(es))", flush=True)

    state = engine.trained_state()
    if rank == 0:
        model.save_pretrained(args.out, state_dict=state)
        summary = {"engine": args.engine if world_size > 1 else None, "world_size": world_size, "losses": losses,
                   "parameters": len(list(model.parameters())), **engine.held_here()}  # fmt: skip
        (args.out / "steps.json").write_text(json.dumps(summary) + "\n")
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return losses


if __name__ == "__main__":
    main()

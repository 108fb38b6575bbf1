"""Carry trained stage-2 pieces to a finer audio-token rate and another LoRA rank, then train on.

    python -m train.refine --adapter mini/trained/stage2 --model_path build/mini-base-k4-linear-real \
        --output build/refined/k4-r11 --lora_r 11
    python -m train.stage2_qlora --config train/configs/mini_stage2.yaml \
        --model_path build/mini-base-k4-linear-real --init_adapter build/refined/k4-r11 ...

Joint training breaks through fastest at a coarse rate (`audio_downsample` 8: the LLM's loss left
its plateau ~200 steps after the start, against ~600 at 4 with an MLP projector, docs/training.md);
a finer rate then gives each token fewer frames to carry. This step writes pieces that start
the finer graft (`--model_path`, built by `train.build` at the new `audio_downsample`) where the
coarse one left off, instead of from scratch:

- the projector's first layer: its weight over the `k_old` stacked frames is cut into
  `k_old / k_new` blocks of `k_new` frames, which are summed. A token of `k_new` frames then maps
  to what the coarse projector gave for `k_old` frames that repeat those `k_new` (the test checks
  it exactly); training takes it on from there.
- LoRA from rank r to `--lora_r`: the new ranks' B start at zero (the model is unchanged) and their
  A as PEFT starts A; `lora_alpha` grows with the rank, so the trained ranks keep their scale.
- a `--lora_r` below the pieces' rank cuts each module's update `B @ A` to its best approximation
  of that rank (its largest singular values, split evenly between B and A); `lora_alpha` shrinks
  with the rank, so the scale stays. Pieces trained at a rank above what may be kept come back to it.
"""

import argparse
import datetime
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
REFINE_FILE = "refine.json"  # what was carried to what, and the command (`mini.demo keep` records it)
PROJECTOR_IN = "audio_projector.linear_1.weight"


def fold_projector(weight: torch.Tensor, width: int, new_downsample: int) -> torch.Tensor:
    """`(out, k_old * width)` -> `(out, k_new * width)`: the blocks of `k_new` frames summed."""
    old_downsample = weight.shape[1] // width
    if weight.shape[1] != old_downsample * width:
        raise ValueError(f"the projector takes {weight.shape[1]} inputs, not a multiple of the encoder width {width}")
    if old_downsample % new_downsample:
        raise ValueError(f"the new audio_downsample ({new_downsample}) must divide the pieces' ({old_downsample})")
    # (out, k_old * width) -> (out, blocks, k_new * width), summed over the blocks
    return weight.reshape(weight.shape[0], old_downsample // new_downsample, new_downsample * width).sum(1)


def grow_lora(name: str, tensor: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    """A LoRA factor at `rank`: B (out, r) padded with zero columns, A (r, in) with rows drawn as
    PEFT draws them (kaiming uniform, a = sqrt(5): uniform within 1 / sqrt(in))."""
    if ".lora_B." in name:
        return torch.cat([tensor, tensor.new_zeros(tensor.shape[0], rank - tensor.shape[1])], 1)
    bound = 1 / math.sqrt(tensor.shape[1])
    extra = torch.empty(rank - tensor.shape[0], tensor.shape[1]).uniform_(-bound, bound, generator=generator)
    return torch.cat([tensor, extra.to(tensor.dtype)], 0)


def shrink_lora(lora_a: torch.Tensor, lora_b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in) and B (out, r) -> A (rank, in) and B (out, rank) whose product is the best rank-`rank`
    approximation of `B @ A` (Eckart-Young), in float32 and then the factors' dtype."""
    q_b, r_b = torch.linalg.qr(lora_b.float())  # B = Qb Rb
    q_a, r_a = torch.linalg.qr(lora_a.float().T)  # A = Ra^T Qa^T, so B A = Qb (Rb Ra^T) Qa^T
    u, s, vh = torch.linalg.svd(r_b @ r_a.T)
    root = s[:rank].sqrt()
    new_b = (q_b @ u[:, :rank]) * root
    new_a = root[:, None] * (vh[:rank] @ q_a.T)
    return new_a.to(lora_a.dtype), new_b.to(lora_b.dtype)


def refine(adapter: Path, model_path: Path, output: Path, lora_r: int | None = None, seed: int = 0,
           command: str | None = None) -> dict:
    """Write the refined pieces into `output`, with `refine.json` (the pieces' audio_downsample and
    LoRA before and after, and `command`); returns their adapter config."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    base = json.loads((Path(model_path) / "config.json").read_text())
    rank = config["r"] if lora_r is None else lora_r
    if rank < 1:
        raise ValueError(f"lora_r must be 1 or more, got {rank}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError("pieces with a per-module rank_pattern or alpha_pattern are not supported")
    width, generator = base["audio_config"]["d_model"], torch.Generator().manual_seed(seed)
    tensors, before = {}, {"lora_r": config["r"], "lora_alpha": config["lora_alpha"]}
    loaded = load_file(str(adapter / ADAPTER_WEIGHTS))
    shrunk = {}
    if rank < config["r"]:
        for name in [name for name in loaded if ".lora_A." in name]:
            b_name = name.replace(".lora_A.", ".lora_B.")
            shrunk[name], shrunk[b_name] = shrink_lora(loaded[name], loaded[b_name], rank)
    for name, tensor in loaded.items():
        if name.endswith(PROJECTOR_IN):
            before["audio_downsample"] = tensor.shape[1] // width
            tensor = fold_projector(tensor, width, base["audio_downsample"])
        elif name in shrunk:
            tensor = shrunk[name]
        elif ".lora_A." in name or ".lora_B." in name:
            tensor = grow_lora(name, tensor, rank, generator)
        tensors[name] = tensor.contiguous()
    if "audio_downsample" not in before:
        raise ValueError(f"{adapter / ADAPTER_WEIGHTS} holds no {PROJECTOR_IN}: not stage-2 pieces with the projector")
    alpha = config["lora_alpha"] * rank / config["r"]
    # inference_mode as PEFT's save_pretrained writes it; training loads the pieces with is_trainable
    config.update(r=rank, lora_alpha=int(alpha) if alpha.is_integer() else alpha,
                  base_model_name_or_path=str(model_path), inference_mode=True)  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(output / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (output / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    after = {"audio_downsample": base["audio_downsample"], "lora_r": rank, "lora_alpha": config["lora_alpha"]}
    record = {"from": before, "to": after, "adapter": str(adapter), "model_path": str(model_path), "command": command,
              "date": datetime.date.today().isoformat()}  # fmt: skip
    (output / REFINE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, required=True, help="stage-2 pieces (LoRA + projector)")
    parser.add_argument("--model_path", type=Path, required=True, help="the graft built at the new audio_downsample")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--lora_r", type=int, default=None, help="the new LoRA rank (default: the pieces' own); "
                        "below it, each module's update is cut to its best approximation of that rank")
    parser.add_argument("--seed", type=int, default=0, help="draws the new ranks' A rows")
    args = parser.parse_args(argv)
    from train.stages import stage_command

    config = refine(args.adapter, args.model_path, args.output, args.lora_r, args.seed,
                    stage_command("train.refine", argv))  # fmt: skip
    print(f"refined {args.adapter} for {args.model_path} into {args.output}: LoRA r={config['r']}, "
          f"alpha {config['lora_alpha']:g}")


if __name__ == "__main__":
    main()

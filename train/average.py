"""Average stage-2 pieces (LoRA + projector) of the same shape into one set: a "model soup".

    python -m train.average --adapters mini/trained/stage2 build/mini-train/k4-p4 --output build/average/p3-p4
    python -m train.evaluate --model build/mini-base --adapter build/average/p3-p4 ...

Each tensor of the output is the mean of the same tensor in every input, in float32. LoRA's two
factors are averaged separately, so the output's update `B @ A` is not the mean of the inputs'
updates (it adds their cross terms); for pieces that started from the same pieces and trained on a
few hundred steps apart, the listening check and the dev-test WER say whether the average helps
(docs/mini-graft.md, "A fourth phase and the average of two"). The inputs must share their LoRA configuration and
their tensors' names and shapes; `average.json` records the inputs and the command.
"""

import argparse
import datetime
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from train.refine import ADAPTER_CONFIG, ADAPTER_WEIGHTS

AVERAGE_FILE = "average.json"
SHARED_CONFIG = ("peft_type", "r", "lora_alpha", "target_modules", "modules_to_save", "use_rslora", "use_dora")


def average(adapters: list[Path], output: Path, command: str | None = None) -> dict:
    """Write the mean of `adapters` into `output` with the first one's adapter config; returns it."""
    if len(adapters) < 2:
        raise ValueError(f"averaging needs at least two adapters, got {len(adapters)}")
    configs = [json.loads((Path(a) / ADAPTER_CONFIG).read_text()) for a in adapters]
    for adapter, config in zip(adapters[1:], configs[1:]):
        for key in SHARED_CONFIG:
            if config.get(key) != configs[0].get(key):
                raise ValueError(f"{adapter} has {key}={config.get(key)!r}, {adapters[0]} {configs[0].get(key)!r}")
    total = {name: tensor.float() for name, tensor in load_file(str(Path(adapters[0]) / ADAPTER_WEIGHTS)).items()}
    for adapter in adapters[1:]:
        tensors = load_file(str(Path(adapter) / ADAPTER_WEIGHTS))
        if tensors.keys() != total.keys():
            differ = sorted(tensors.keys() ^ total.keys())[0]
            raise ValueError(f"{adapter} and {adapters[0]} hold different tensors: {differ} is in one only")
        for name, tensor in tensors.items():
            if tensor.shape != total[name].shape:
                raise ValueError(f"{name} is {tuple(tensor.shape)} in {adapter}, "
                                 f"{tuple(total[name].shape)} in {adapters[0]}")
            total[name] += tensor.float()
    output.mkdir(parents=True, exist_ok=True)
    save_file({name: (tensor / len(adapters)).contiguous() for name, tensor in total.items()},
              str(output / ADAPTER_WEIGHTS), metadata={"format": "pt"})  # fmt: skip
    (output / ADAPTER_CONFIG).write_text(json.dumps(configs[0], indent=2) + "\n")
    record = {"adapters": [str(a) for a in adapters], "command": command, "date": datetime.date.today().isoformat()}
    (output / AVERAGE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return configs[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=Path, nargs="+", required=True, help="two or more stage-2 pieces")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    from train.stages import stage_command

    average(args.adapters, args.output, stage_command("train.average", argv))
    print(f"averaged {len(args.adapters)} adapters into {args.output}")


if __name__ == "__main__":
    main()

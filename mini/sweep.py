"""Choose `audio_downsample` and `projector_type` by measurement on the mini graft.

    python -m mini.sweep --steps 60 [--configs 4:linear 2:linear 1:linear 4:mlp]

For each configuration: compose the mini graft (`train.build`), run stage 1 with the same step
budget (`train/configs/mini_stage1.yaml`), then score the dev-test set (`train.evaluate`). Writes
`build/mini-sweep/results.json` and prints a table of WER per source against audio tokens per second.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from train.metrics import wer_by_group

COMPONENTS = Path("build/components")
LLM = COMPONENTS / "qwen2.5-coder-0.5b-instruct"
ENCODER = COMPONENTS / "whisper-base"


def _run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


def base_folder(downsample: int, projector: str) -> Path:
    folder = Path(f"build/mini-base-k{downsample}-{projector}")
    if not (folder / "config.json").exists():
        _run(["train.build", "--llm", str(LLM), "--encoder", str(ENCODER), "--output", str(folder),
              "--audio-downsample", str(downsample), "--projector-type", projector, "--max-audio-seconds", "120",
              "--dtype", "float32"])  # fmt: skip
    return folder


def per_source(predictions: Path, manifest: Path) -> dict:
    """WER of each dev-test voice (and of all clips), from the per-clip predictions."""
    voices = {}
    for index, line in enumerate(manifest.read_text().splitlines()):
        row = json.loads(line)
        voices[str(row.get("id", index))] = row["voice"]  # train.data ids rows by position when they have no id
    clips = [json.loads(line) for line in predictions.read_text().splitlines()]
    return wer_by_group([voices.get(c["id"], "unknown") for c in clips], [c["reference"] for c in clips],
                        [c["hypothesis"] for c in clips])  # fmt: skip


def run_one(downsample: int, projector: str, steps: int, out: Path) -> dict:
    base = base_folder(downsample, projector)
    stage1 = out / f"k{downsample}-{projector}"
    started = time.time()
    _run(["train.stage1_align", "--config", "train/configs/mini_stage1.yaml", "--model_path", str(base),
          "--output_dir", str(stage1), "--max_steps", str(steps), "--warmup_steps", str(max(1, steps // 10)),
          "--save_steps", str(steps)])  # fmt: skip
    train_seconds = time.time() - started
    _run(["train.evaluate", "--model", str(base), "--projector", str(stage1), "--data", "build/corpus/devtest.jsonl",
          "--output", str(stage1 / "eval"), "--max-new-tokens", "48", "--dtype", "bfloat16"])  # fmt: skip
    results = json.loads((stage1 / "eval" / "results.json").read_text())
    return {"audio_downsample": downsample, "projector_type": projector, "audio_tokens_per_second": 50 / downsample,
            "steps": steps, "train_seconds": round(train_seconds), "wer": results["wer"],
            "wer_by_voice": per_source(stage1 / "eval" / "predictions.jsonl", Path("build/corpus/devtest.jsonl"))}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--configs", nargs="+", default=["4:linear", "2:linear", "1:linear", "4:mlp"])
    parser.add_argument("--out", type=Path, default=Path("build/mini-sweep"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "results.json"
    rows = json.loads(record.read_text()) if record.exists() else []
    for spec in args.configs:
        downsample, projector = int(spec.split(":")[0]), spec.split(":")[1]
        if any(r["audio_downsample"] == downsample and r["projector_type"] == projector and r["steps"] == args.steps
               for r in rows):  # fmt: skip
            continue
        rows.append(run_one(downsample, projector, args.steps, args.out))
        record.write_text(json.dumps(rows, indent=2) + "\n")
    print("| downsample | projector | audio tokens/s | steps | train s | dev-test WER | WER by voice |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        voices = ", ".join(f"{v} {w:.1%}" for v, w in r["wer_by_voice"].items())
        print(f"| {r['audio_downsample']} | {r['projector_type']} | {r['audio_tokens_per_second']:g} | {r['steps']} "
              f"| {r['train_seconds']} | {r['wer']:.1%} | {voices} |")


if __name__ == "__main__":
    main()

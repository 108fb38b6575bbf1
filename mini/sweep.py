"""Choose `audio_downsample` and `projector_type` by measurement on the mini graft.

    python -m mini.sweep --steps 60 [--configs 4:linear 2:linear 1:linear 4:mlp]
    python -m mini.sweep --stage1-config train/configs/mini_stage1_gpu.yaml --corpus build/corpus-12k \
        --steps 600 --parallel --eval-batch-size 32 --promote        # on one GPU (make mini-train-gpu)

For each configuration: compose the mini graft (`train.build`), run stage 1 with the same step
budget (`--stage1-config`), then score the dev-test set (`train.evaluate`). Writes
`<out>/results.json` and prints a table of WER per source against audio tokens per second.
`--parallel` runs the configurations' stage 1 side by side (a 0.5 B model leaves most of a large
GPU idle). `--promote` links the chosen configuration's graft to `build/mini-base` and copies its
projector to `build/mini-train/stage1`, where stage 2 starts from.

The choice (`choose`): the fewest audio tokens per second among the configurations whose WER is
within `--tolerance` (relative) of the best one.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from train.metrics import wer_by_group

COMPONENTS = Path("build/components")
LLM = COMPONENTS / "qwen2.5-coder-0.5b-instruct"
ENCODER = COMPONENTS / "whisper-base"
BASE, STAGE1 = Path("build/mini-base"), Path("build/mini-train/stage1")


def _module(args: list[str]) -> list[str]:
    return [sys.executable, "-m", *args]


def run_name(downsample: int, projector: str, encode_padding: bool = True) -> str:
    return f"k{downsample}-{projector}" + ("" if encode_padding else "-real")


def base_folder(name: str) -> Path:
    return Path(f"build/mini-base-{name}")


def per_source(predictions: Path, manifest: Path) -> dict:
    """WER of each dev-test voice (and of all clips), from the per-clip predictions."""
    voices = {}
    for index, line in enumerate(manifest.read_text().splitlines()):
        row = json.loads(line)
        voices[str(row.get("id", index))] = row["voice"]  # train.data ids rows by position when they have no id
    clips = [json.loads(line) for line in predictions.read_text().splitlines()]
    return wer_by_group([voices.get(c["id"], "unknown") for c in clips], [c["reference"] for c in clips],
                        [c["hypothesis"] for c in clips])  # fmt: skip


class Run:
    """One configuration (`downsample:projector`, `:real` for `encode_padding=False`): its graft,
    its stage-1 command and, once trained, its scores."""

    def __init__(self, spec: str, args):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[1] not in ("linear", "mlp") or parts[2:] not in ([], ["real"]):
            raise ValueError(f"a configuration is downsample:linear|mlp[:real], got {spec!r}")
        self.downsample, self.projector, self.encode_padding = int(parts[0]), parts[1], parts[2:] != ["real"]
        self.name = run_name(self.downsample, self.projector, self.encode_padding)
        self.args, self.base = args, base_folder(self.name)
        self.log, self.stage1 = args.out / f"{self.name}.log", args.out / self.name
        self.seconds = None

    def build_command(self) -> list[str]:
        return _module(["train.build", "--llm", str(LLM), "--encoder", str(ENCODER), "--output", str(self.base),
                        "--audio-downsample", str(self.downsample), "--projector-type", self.projector,
                        "--max-audio-seconds", "120", "--dtype", "float32",
                        "--encode-padding" if self.encode_padding else "--no-encode-padding"])  # fmt: skip

    def train_command(self) -> list[str]:
        corpus = self.args.corpus
        return _module(["train.stage1_align", "--config", str(self.args.stage1_config), "--model_path", str(self.base),
                        "--train_data", str(corpus / "train.jsonl"), "--eval_data", str(corpus / "devtest.jsonl"),
                        "--output_dir", str(self.stage1), "--max_steps", str(self.args.steps),
                        "--warmup_steps", str(max(1, self.args.steps // 10)), "--save_steps", str(self.args.steps),
                        *shlex.split(self.args.stage1_overrides)])  # fmt: skip

    def eval_command(self) -> list[str]:
        return _module(["train.evaluate", "--model", str(self.base), "--projector", str(self.stage1),
                        "--data", str(self.args.corpus / "devtest.jsonl"), "--output", str(self.stage1 / "eval"),
                        "--max-new-tokens", "48", "--dtype", self.args.eval_dtype,
                        "--batch-size", str(self.args.eval_batch_size)])  # fmt: skip

    def final_loss(self, last: int = 3) -> float | None:
        """Mean of the last `last` logged training losses (from the checkpoint's trainer_state.json)."""
        states = sorted(self.stage1.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
        if not states:
            return None
        losses = [e["loss"] for e in json.loads(states[-1].read_text())["log_history"] if "loss" in e]
        return round(sum(losses[-last:]) / len(losses[-last:]), 4) if losses else None

    def finished(self) -> bool:
        """Trained to `--steps` and scored already (a sweep cut off after this run resumes past it)."""
        return (self.stage1 / f"checkpoint-{self.args.steps}").is_dir() and (self.stage1 / "eval" / "results.json").exists()

    def train_seconds(self) -> float | None:
        """The trainer's own train_runtime when it wrote one, else the wall time this sweep measured."""
        metrics = self.stage1 / "train_results.json"
        if metrics.exists():
            return float(json.loads(metrics.read_text())["train_runtime"])
        return self.seconds

    def result(self) -> dict:
        results = json.loads((self.stage1 / "eval" / "results.json").read_text())
        return {"audio_downsample": self.downsample, "projector_type": self.projector,
                "encode_padding": self.encode_padding, "audio_tokens_per_second": 50 / self.downsample, "steps": self.args.steps,
                "train_seconds": _round(self.train_seconds()), "final_train_loss": self.final_loss(),
                "wer": results["wer"], "cer": results.get("cer"),
                "wer_by_voice": per_source(self.stage1 / "eval" / "predictions.jsonl", self.args.corpus / "devtest.jsonl")}  # fmt: skip


def side_by_side(jobs: list[tuple["Run", list[str]]], what: str, parallel: bool) -> None:
    """Run each (run, command); all at once with `parallel` (output to each run's log), else in turn."""
    for group in ([jobs] if parallel else [[job] for job in jobs]):
        processes = []
        for run, command in group:
            log = open(run.log, "a") if parallel else None
            processes.append((run, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT if log else None)))
        for run, process in processes:
            if process.wait() != 0:
                hint = f"; see {run.log}" if parallel else ""
                raise RuntimeError(f"{what} of {run.name} failed (exit {process.returncode}){hint}")


def run_all(runs: list[Run], parallel: bool) -> None:
    """Build the grafts not built yet, train stage 1 of each run, then score each on the dev-test set."""
    missing = [run for run in runs if not (run.base / "config.json").exists()]
    side_by_side([(run, run.build_command()) for run in missing], "building the graft", parallel)
    for group in ([runs] if parallel else [[run] for run in runs]):
        started = time.time()
        side_by_side([(run, run.train_command()) for run in group], "stage 1", parallel)
        for run in group:  # side by side, a run's time is the wall time of the whole group
            run.seconds = time.time() - started
    for run in runs:
        subprocess.run(run.eval_command(), check=True)


def choose(rows: list[dict], tolerance: float) -> dict:
    """The fewest audio tokens per second among rows within `tolerance` (relative) of the best WER;
    between equals, real-frames encoding (less encoder work), then the lower WER."""
    best = min(r["wer"] for r in rows)
    near = [r for r in rows if r["wer"] <= best * (1 + tolerance)]
    return min(near, key=lambda r: (r["audio_tokens_per_second"], r.get("encode_padding", True), r["wer"]))


def promote(row: dict, out: Path) -> None:
    """build/mini-base -> the chosen graft (a link); its projector -> build/mini-train/stage1."""
    name = run_name(row["audio_downsample"], row["projector_type"], row.get("encode_padding", True))
    if BASE.is_symlink() or BASE.is_file():
        BASE.unlink()
    elif BASE.exists():
        shutil.rmtree(BASE)
    os.symlink(Path(f"mini-base-{name}"), BASE)  # relative to build/
    shutil.rmtree(STAGE1, ignore_errors=True)
    STAGE1.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(out / name, STAGE1, ignore=shutil.ignore_patterns("checkpoint-*", "eval"))
    print(f"promoted {name}: {BASE} -> mini-base-{name}, projector in {STAGE1}")


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> None:
    print("| downsample | projector | encoder input | audio tokens/s | steps | train s | final train loss | dev-test WER "
          "| dev-test CER | WER by voice |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        voices = ", ".join(f"{v} {w:.1%}" for v, w in r["wer_by_voice"].items())
        window = "30 s windows" if r.get("encode_padding", True) else "real frames"
        print(f"| {r['audio_downsample']} | {r['projector_type']} | {window} | {r['audio_tokens_per_second']:g} "
              f"| {r['steps']} | {_fmt(r['train_seconds'], 'd')} | {_fmt(r.get('final_train_loss'), '.3f')} | {r['wer']:.1%} "
              f"| {_fmt(r.get('cer'), '.1%')} | {voices} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--configs", nargs="+", default=["4:linear", "2:linear", "1:linear", "4:mlp"])
    parser.add_argument("--stage1-config", type=Path, default=Path("train/configs/mini_stage1.yaml"))
    parser.add_argument("--corpus", type=Path, default=Path("build/corpus"), help="folder with train/devtest.jsonl")
    parser.add_argument("--stage1-overrides", default="", help='more stage-1 flags, e.g. "--learning_rate 5e-4"')
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--eval-dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--parallel", action="store_true", help="train the configurations side by side")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--promote", action="store_true", help="make the chosen configuration stage 2's start")
    parser.add_argument("--out", type=Path, default=Path("build/mini-sweep"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "results.json"
    rows = json.loads(record.read_text())["runs"] if record.exists() else []
    done = {(run_name(r["audio_downsample"], r["projector_type"], r.get("encode_padding", True)), r["steps"])
            for r in rows}  # fmt: skip
    runs = [Run(spec, args) for spec in args.configs]
    todo = [run for run in runs if (run.name, args.steps) not in done]
    resumed = [run for run in todo if run.finished()]
    if resumed:
        print("already trained and scored, not run again: " + ", ".join(run.name for run in resumed))
    run_all([run for run in todo if run not in resumed], args.parallel)
    rows += [run.result() for run in todo]
    chosen = choose([r for r in rows if r["steps"] == args.steps], args.tolerance)
    record.write_text(json.dumps({"runs": rows, "chosen": chosen, "tolerance": args.tolerance}, indent=2) + "\n")
    table(rows)
    print(f"chosen: {run_name(chosen['audio_downsample'], chosen['projector_type'], chosen.get('encode_padding', True))} "
          f"(WER {chosen['wer']:.1%}, {chosen['audio_tokens_per_second']:g} audio tokens/s)")
    if args.promote:
        promote(chosen, args.out)
    return chosen


if __name__ == "__main__":
    main()

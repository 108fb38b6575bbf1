"""Choose `audio_downsample` (and other composition choices) by measurement on the mini graft.

    python -m bench.sweep --steps 300 --configs 8:linear:real 4:linear:real 2:linear:real
    python -m bench.sweep --steps 300 --configs 8:linear:real 8:linear:real:gain=embedding 8:linear:real:staged=150
    python -m bench.sweep --corpus build/corpus --steps 600 --parallel --eval_batch_size 32 \
        --stage_overrides "--use_cpu false --per_device_train_batch_size 32"   # on one GPU

A configuration is `downsample:linear|mlp[:real][:gain=G][:staged=S]`: the audio tokens' stack
of encoder frames, the projector type, `real` for the encoder over real frames only
(`encode_padding=False`), the projector's starting gain (`train.build --projector_gain`; a number
or `embedding`), and `staged=S` for stage 1 (projector alone) for S of the steps before stage 2
takes over from its projector, instead of joint training from step 0.

For each configuration: compose the mini graft (`train.build`), train it with the same step
budget (`--stage_config`, the joint recipe; its listening check and WER are logged at every
evaluation), then score the whole validation set (`train.evaluate`): choices are made on
validation, never on dev-test. Writes `<out>/results.json`
and prints a table: WER per source, the last listening check, audio tokens per second.
`--parallel` trains the configurations side by side (a 0.5 B model leaves most of a large GPU
idle).

The choice (`choose`): the fewest audio tokens per second among the configurations whose WER is
within `--tolerance` (relative) of the best one.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mini.demo import last_state
from train.evaluation.metrics import wer_by_group

COMPONENTS = Path("build/components")
LLM = COMPONENTS / "qwen2.5-coder-0.5b-instruct"
ENCODER = COMPONENTS / "whisper-base"
SPEC_HELP = "downsample:linear|mlp[:real][:gain=G][:staged=S]"


def _module(args: list[str]) -> list[str]:
    return [sys.executable, "-m", *args]


def run_name(downsample: int, projector: str, encode_padding: bool = True, gain: str | None = None,
             staged: int | None = None) -> str:  # fmt: skip
    name = f"k{downsample}-{projector}" + ("" if encode_padding else "-real")
    return name + (f"-gain-{gain}" if gain is not None else "") + (f"-staged-{staged}" if staged else "")


def base_folder(name: str) -> Path:
    return Path(f"build/mini-base-{name}")


def per_source(predictions: Path, manifest: Path) -> dict:
    """WER of each validation voice (and of all clips), from the per-clip predictions."""
    voices = {}
    for index, line in enumerate(manifest.read_text().splitlines()):
        row = json.loads(line)
        voices[str(row.get("id", index))] = row["voice"]  # train.stages.data ids rows by position when they have no id
    clips = [json.loads(line) for line in predictions.read_text().splitlines()]
    return wer_by_group([voices.get(c["id"], "unknown") for c in clips], [c["reference"] for c in clips],
                        [c["hypothesis"] for c in clips])  # fmt: skip


def parse_spec(spec: str) -> dict:
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0].isdigit() or parts[1] not in ("linear", "mlp"):
        raise ValueError(f"a configuration is {SPEC_HELP}, got {spec!r}")
    parsed = {"downsample": int(parts[0]), "projector": parts[1], "encode_padding": True, "gain": None, "staged": None}
    for part in parts[2:]:
        key, _, value = part.partition("=")
        if part == "real":
            parsed["encode_padding"] = False
        elif key == "gain" and value:
            parsed["gain"] = value
        elif key == "staged" and value.isdigit():
            parsed["staged"] = int(value)
        else:
            raise ValueError(f"a configuration is {SPEC_HELP}, got {spec!r}")
    return parsed


class Run:
    """One configuration: its graft, its training commands and, once trained, its scores."""

    def __init__(self, spec: str, args):
        parsed = parse_spec(spec)
        self.downsample, self.projector = parsed["downsample"], parsed["projector"]
        self.encode_padding, self.gain, self.staged = parsed["encode_padding"], parsed["gain"], parsed["staged"]
        self.name = run_name(self.downsample, self.projector, self.encode_padding, self.gain, self.staged)
        composed = run_name(self.downsample, self.projector, self.encode_padding, self.gain)  # staged: same graft
        self.args, self.base = args, base_folder(composed)
        self.log, self.output = args.out / f"{self.name}.log", args.out / self.name
        self.seconds = None

    def build_command(self) -> list[str]:
        gain = [] if self.gain is None else ["--projector_gain", self.gain]
        return _module(["train.build", "--llm", str(LLM), "--encoder", str(ENCODER), "--output", str(self.base),
                        "--audio_downsample", str(self.downsample), "--projector_type", self.projector,
                        "--max_audio_seconds", "120", "--dtype", "float32", *gain,
                        "--encode_padding" if self.encode_padding else "--no_encode_padding"])  # fmt: skip

    def _stage(self, module, config, output, steps, extra=()) -> list[str]:
        corpus, every = self.args.corpus, max(1, steps // 3)
        return _module([module, "--config", str(config), "--model_path", str(self.base),
                        "--train_data", str(corpus / "train.jsonl"), "--eval_data", str(corpus / "validation.jsonl"),
                        "--output_dir", str(output), "--max_steps", str(steps), "--eval_strategy", "steps",
                        "--eval_steps", str(every), "--save_steps", str(every), *extra,
                        *shlex.split(self.args.stage_overrides)])  # fmt: skip

    def train_commands(self) -> list[list[str]]:
        """Joint training for `--steps`; or stage 1 for `staged` steps, then stage 2 for the rest."""
        if not self.staged:
            return [self._stage("train.stage2_qlora", self.args.stage_config, self.output, self.args.steps)]
        first = self.args.out / f"{self.name}-stage1"
        return [self._stage("train.stage1_align", self.args.stage1_config, first, self.staged),
                self._stage("train.stage2_qlora", self.args.stage_config, self.output, self.args.steps - self.staged,
                            ["--projector_path", str(first)])]  # fmt: skip

    def eval_command(self) -> list[str]:
        return _module(["train.evaluate", "--model", str(self.base), "--adapter", str(self.output),
                        "--data", str(self.args.corpus / "validation.jsonl"), "--output", str(self.output / "eval"),
                        "--max_new_tokens", "48", "--dtype", self.args.eval_dtype,
                        "--batch_size", str(self.args.eval_batch_size)])  # fmt: skip

    def last_check(self) -> dict:
        """Final train loss (mean of the last 3 logged) and the last listening check of the run."""
        state = last_state(self.output)
        if state is None:
            return {}
        losses = [e["loss"] for e in state["log_history"] if "loss" in e]
        checks = [e for e in state["log_history"] if "eval_loss_own_audio" in e]
        found = {"final_train_loss": round(sum(losses[-3:]) / len(losses[-3:]), 4) if losses else None}
        if checks:
            found.update({k: checks[-1][k] for k in ("eval_loss_own_audio", "eval_loss_zeroed_audio",
                                                      "eval_loss_shuffled_audio")})  # fmt: skip
        return found

    def finished(self) -> bool:
        """Trained to the last step and scored already (a sweep cut off after this run resumes past it)."""
        steps = self.args.steps - (self.staged or 0)
        return (self.output / f"checkpoint-{steps}").is_dir() and (self.output / "eval" / "results.json").exists()

    def train_seconds(self) -> float | None:
        """The trainers' own train_runtime when they wrote it, else the wall time this sweep measured."""
        folders = [self.output] + ([self.args.out / f"{self.name}-stage1"] if self.staged else [])
        metrics = [folder / "train_results.json" for folder in folders]
        if all(m.exists() for m in metrics):
            return sum(float(json.loads(m.read_text())["train_runtime"]) for m in metrics)
        return self.seconds

    def result(self) -> dict:
        results = json.loads((self.output / "eval" / "results.json").read_text())
        return {"name": self.name, "audio_downsample": self.downsample, "projector_type": self.projector,
                "encode_padding": self.encode_padding, "projector_gain": self.gain, "staged": self.staged,
                "audio_tokens_per_second": 50 / self.downsample, "steps": self.args.steps,
                "train_seconds": _round(self.train_seconds()), **self.last_check(),
                "wer": results["wer"], "cer": results.get("cer"),
                "wer_by_voice": per_source(self.output / "eval" / "predictions.jsonl", self.args.corpus / "validation.jsonl")}  # fmt: skip


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


def build_missing(runs: list[Run], parallel: bool) -> list[Run]:
    """Build the grafts of `runs` not built yet (one per graft); the runs whose graft was built."""
    missing = list({run.base: run for run in runs if not (run.base / "config.json").exists()}.values())
    side_by_side([(run, run.build_command()) for run in missing], "building the graft", parallel)
    return missing


def run_all(runs: list[Run], parallel: bool) -> None:
    """Build the grafts not built yet, train each run, then score each on the validation set."""
    build_missing(runs, parallel)
    for group in ([runs] if parallel else [[run] for run in runs]):
        started = time.time()
        for phase in range(max(len(run.train_commands()) for run in group)):
            jobs = [(run, run.train_commands()[phase]) for run in group if phase < len(run.train_commands())]
            side_by_side(jobs, "training", parallel)
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


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> None:
    print("| configuration | audio tokens/s | steps | train s | final train loss | loss own / zeroed / shuffled audio "
          "| validation WER | validation CER | WER by voice |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        voices = ", ".join(f"{v} {w:.1%}" for v, w in r["wer_by_voice"].items())
        check = " / ".join(_fmt(r.get(f"eval_loss_{way}_audio"), ".2f") for way in ("own", "zeroed", "shuffled"))
        print(f"| {r['name']} | {r['audio_tokens_per_second']:g} | {r['steps']} | {_fmt(r['train_seconds'], 'd')} "
              f"| {_fmt(r.get('final_train_loss'), '.3f')} | {check} | {r['wer']:.1%} | {_fmt(r.get('cer'), '.1%')} "
              f"| {voices} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--configs", nargs="+", default=["8:linear:real", "4:linear:real", "2:linear:real"],
                        help=SPEC_HELP)
    parser.add_argument("--stage_config", type=Path, default=Path("train/configs/mini_stage2.yaml"))
    parser.add_argument("--stage1_config", type=Path, default=Path("train/configs/mini_stage1.yaml"),
                        help="stage 1 of the staged=S configurations")
    parser.add_argument("--corpus", type=Path, default=Path("build/corpus"), help="folder with train/validation.jsonl")
    parser.add_argument("--stage_overrides", default="", help='more training flags, e.g. "--learning_rate 1e-4"')
    parser.add_argument("--eval_batch_size", type=int, default=8)
    parser.add_argument("--eval_dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--parallel", action="store_true", help="train the configurations side by side")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("build/mini-sweep"))
    parser.add_argument("--build_only", action="store_true",
                        help="only build the configurations' grafts not built yet (build/mini-base-...), then stop")
    args = parser.parse_args(argv)
    if args.build_only:
        built = build_missing([Run(spec, args) for spec in args.configs], args.parallel)
        print(f"built {len(built)} graft(s): " + ", ".join(str(run.base) for run in built) if built
              else "every graft already built")  # fmt: skip
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "results.json"
    rows = json.loads(record.read_text())["runs"] if record.exists() else []
    runs = {spec: Run(spec, args) for spec in args.configs}
    done = {(r["name"], r["steps"]) for r in rows}
    todo = {spec: run for spec, run in runs.items() if (run.name, args.steps) not in done}
    resumed = [run for run in todo.values() if run.finished()]
    if resumed:
        print("already trained and scored, not run again: " + ", ".join(run.name for run in resumed))
    run_all([run for run in todo.values() if run not in resumed], args.parallel)
    rows += [{"spec": spec, **run.result()} for spec, run in todo.items()]
    asked = {run.name for run in runs.values()}
    chosen = choose([r for r in rows if r["steps"] == args.steps and r["name"] in asked], args.tolerance)
    record.write_text(json.dumps({"runs": rows, "chosen": chosen, "tolerance": args.tolerance}, indent=2) + "\n")
    table(rows)
    print(f"chosen: {chosen['name']} (WER {chosen['wer']:.1%}, {chosen['audio_tokens_per_second']:g} audio tokens/s)")
    return chosen


if __name__ == "__main__":
    main()

"""Training curves from a Trainer's `state.log_history`: the losses, the listening check and the WER.

Run (on a checkpoint's trainer_state.json):

    .venv/bin/python -m train.stages.plots out/stage1/checkpoint-500/trainer_state.json out/stage1/training.png --title "stage 1"

Left panel: the training loss, and at each evaluation the held-out loss with each clip's own
audio beside the loss with the audio zeroed and shuffled (`train.evaluation.listening`): a graft that
listens opens a gap between them. Right panel: WER and CER on the evaluation set (`eval_data`) at each
evaluation.

Several runs side by side (each a trainer_state.json, or a recipe.json that `mini.demo keep` wrote):

    .venv/bin/python -m train.stages.plots runs/screens.png --compare fresh=runs/a/trainer_state.json ctc=runs/b/trainer_state.json

Left: each run's own-audio and zeroed-audio evaluation losses; right: each run's WER, per step.
"""

import argparse
import json
from pathlib import Path

import matplotlib

# Agg renders to files without a display, as on training machines and CI.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)

LOSS_SERIES = (
    ("loss", "train loss", dict(color="tab:blue", linewidth=1.0, alpha=0.7)),
    ("eval_loss", "eval loss", dict(color="tab:orange", marker="o")),
    ("eval_loss_own_audio", "evaluation set, own audio", dict(color="tab:green", marker="o")),
    ("eval_loss_zeroed_audio", "evaluation set, audio zeroed", dict(color="tab:red", marker="x", linestyle="--")),
    ("eval_loss_shuffled_audio", "evaluation set, audio shuffled", dict(color="tab:purple", marker="+", linestyle=":")),
)
RATE_SERIES = (
    ("eval_wer", "WER", dict(color="tab:green", marker="s")),
    ("eval_cer", "CER", dict(color="tab:olive", marker="^", linestyle="--")),
)


def _series(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of the entries that carry `key` (Trainer logs train and eval in separate entries)."""
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def _save(figure, title: str, out_png: str | Path) -> Path:
    figure.suptitle(title)
    figure.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png


def plot_training(log_history: list[dict], out_png: str | Path, title: str) -> Path:
    """Write a PNG of the losses (with the listening check) and, when logged, the WER per step."""
    losses = [(label, style, *_series(log_history, key)) for key, label, style in LOSS_SERIES]
    rates = [(label, style, *_series(log_history, key)) for key, label, style in RATE_SERIES]
    if not any(values for *_, values in losses):
        raise ValueError(f"expected log_history entries with 'step' and 'loss' or 'eval_loss', "
                         f"got none among {len(log_history)} entries")
    has_rates = any(values for *_, values in rates)
    figure, axes = plt.subplots(1, 2 if has_rates else 1, figsize=(12 if has_rates else 7, 4.5), dpi=110, squeeze=False)
    loss_axis = axes[0][0]
    for label, style, steps, values in losses:
        if values:
            loss_axis.plot(steps, values, label=label, **style)
    loss_axis.set(xlabel="step", ylabel="loss (nats per answer token)", title="losses and listening check")
    loss_axis.grid(alpha=0.3)
    loss_axis.legend(loc="best", fontsize="small")  # the audio-shuffled curve runs along the top
    if has_rates:
        rate_axis = axes[0][1]
        for label, style, steps, values in rates:
            if values:
                rate_axis.plot(steps, [100 * v for v in values], label=label, **style)
        # Read against zero (a perfect transcript), so the axis keeps it in view.
        rate_axis.set_ylim(bottom=0)
        rate_axis.set(xlabel="step", ylabel="%", title="error rates on the evaluation set")
        rate_axis.grid(alpha=0.3)
        rate_axis.legend(loc="upper right", fontsize="small")
    return _save(figure, title, out_png)


def read_history(path: str | Path) -> list[dict]:
    """The logged entries of a trainer_state.json (`log_history`) or of a kept run's recipe.json
    (`evaluations`, the same keys per step)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("log_history", "evaluations"):
        if isinstance(data, dict) and isinstance(data.get(key), list):
            return data[key]
    raise ValueError(f"expected a trainer_state.json ('log_history') or a recipe.json ('evaluations'), got {path}")


def comparison_series(runs: list[tuple[str, list[dict]]]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """Per run label, the (steps, values) of its own-audio and zeroed-audio evaluation losses and its WER."""
    series = {}
    for label, log_history in runs:
        if label in series:
            raise ValueError(f"expected distinct run labels, got {label!r} twice")
        series[label] = {name: _series(log_history, key) for name, key in (
            ("own", "eval_loss_own_audio"), ("zeroed", "eval_loss_zeroed_audio"), ("wer", "eval_wer"))}
        if not series[label]["wer"][1]:
            raise ValueError(f"expected evaluations with 'eval_wer' in run {label!r}, got none among "
                             f"{len(log_history)} entries")
    return series


def plot_comparison(runs: list[tuple[str, list[dict]]], out_png: str | Path, title: str) -> Path:
    """Write a PNG of several runs' listening checks (own audio solid, zeroed dashed) and WER per step."""
    series = comparison_series(runs)
    figure, (loss_axis, rate_axis) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    for index, (label, curves) in enumerate(series.items()):
        color = f"C{index}"
        loss_axis.plot(*curves["own"], color=color, marker="o", label=f"{label}, own audio")
        loss_axis.plot(*curves["zeroed"], color=color, marker="x", linestyle="--", alpha=0.6,
                       label=f"{label}, audio zeroed")
        steps, values = curves["wer"]
        rate_axis.plot(steps, [100 * v for v in values], color=color, marker="s", label=label)
    loss_axis.set(xlabel="step", ylabel="loss (nats per answer token)", title="listening check")
    rate_axis.set_ylim(bottom=0)
    rate_axis.set(xlabel="step", ylabel="WER %", title="WER on the evaluation set")
    for axis in (loss_axis, rate_axis):
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    return _save(figure, title, out_png)


def _run_spec(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    if not (sep and label and path):
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {spec!r}")
    return label, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                        help="TRAINER_STATE OUT_PNG; with --compare, OUT_PNG alone")
    parser.add_argument("--compare", type=_run_spec, nargs="+", metavar="LABEL=PATH",
                        help="runs to draw side by side: a trainer_state.json or a recipe.json each")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    if len(args.paths) != (1 if args.compare else 2):
        parser.error(f"expected {'OUT_PNG' if args.compare else 'TRAINER_STATE OUT_PNG'}, got {len(args.paths)} paths")
    if args.compare:
        runs = [(label, read_history(path)) for label, path in args.compare]
        print(f"wrote {plot_comparison(runs, args.paths[0], args.title or 'runs compared')}")
        return
    log_history = read_history(args.paths[0])
    print(f"wrote {plot_training(log_history, args.paths[1], args.title or 'training')}")


if __name__ == "__main__":
    main()

"""Training curves from a Trainer's `state.log_history`: the losses, the listening check and the WER.

Run (on a checkpoint's trainer_state.json):

    .venv/bin/python -m train.stages.plots out/stage1/checkpoint-500/trainer_state.json out/stage1/training.png --title "stage 1"

Left panel: the training loss, and at each evaluation the held-out loss with each clip's own
audio beside the loss with the audio zeroed and shuffled (`train.evaluation.listening`): a graft that
listens opens a gap between them. Right panel: WER and CER on the evaluation set (`eval_data`) at each
evaluation.
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
    figure.suptitle(title)
    figure.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trainer_state", type=Path, help="trainer_state.json written by Trainer")
    parser.add_argument("out_png", type=Path)
    parser.add_argument("--title", default="training")
    args = parser.parse_args(argv)
    log_history = json.loads(args.trainer_state.read_text(encoding="utf-8"))["log_history"]
    print(f"wrote {plot_training(log_history, args.out_png, args.title)}")


if __name__ == "__main__":
    main()

"""Training curves from a Trainer's `state.log_history`: loss against step, eval WER beside it.

Run (on a checkpoint's trainer_state.json):

    .venv/bin/python -m train.plots out/stage1/checkpoint-500/trainer_state.json out/stage1/loss.png --title "stage 1"
"""

import argparse
import json
from pathlib import Path

import matplotlib

# Agg renders to files without a display, as on training machines and CI.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)


def _series(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of the entries that carry `key` (Trainer logs train and eval in separate entries)."""
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_training(log_history: list[dict], out_png: str | Path, title: str) -> Path:
    """Write a PNG of train/eval loss per step, with eval WER on a right-hand axis when logged."""
    train_steps, train_loss = _series(log_history, "loss")
    eval_steps, eval_loss = _series(log_history, "eval_loss")
    wer_steps, eval_wer = _series(log_history, "eval_wer")
    if not train_loss and not eval_loss:
        raise ValueError(f"expected log_history entries with 'step' and 'loss' or 'eval_loss', "
                         f"got none among {len(log_history)} entries")

    figure, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    if train_loss:
        loss_axis.plot(train_steps, train_loss, color="tab:blue", linewidth=1.2, label="train loss")
    if eval_loss:
        loss_axis.plot(eval_steps, eval_loss, color="tab:orange", marker="o", label="eval loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss")
    loss_axis.grid(alpha=0.3)
    handles, labels = loss_axis.get_legend_handles_labels()
    if eval_wer:
        wer_axis = loss_axis.twinx()
        wer_axis.plot(wer_steps, eval_wer, color="tab:green", marker="s", linestyle="--", label="eval WER")
        wer_axis.set_ylabel("eval WER", color="tab:green")
        # WER is read against zero (a perfect transcript), so the axis keeps it in view.
        wer_axis.set_ylim(bottom=0)
        wer_axis.tick_params(axis="y", colors="tab:green")
        wer_handles, wer_labels = wer_axis.get_legend_handles_labels()
        handles, labels = handles + wer_handles, labels + wer_labels
    # One legend for both axes, so the WER line is not missing from it.
    loss_axis.legend(handles, labels, loc="upper right")
    loss_axis.set_title(title)
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

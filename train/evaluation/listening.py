"""The listening check: does the model use its audio?

A loss curve alone cannot tell a graft that transcribes from one that writes plausible text
regardless of the audio: both losses fall. The check scores the same held-out clips three ways:

- `own`: each clip with its own audio (the ordinary loss);
- `zeroed`: each clip's audio replaced by silence of the same length (the same prompt and token
  count, nothing to hear);
- `shuffled`: each clip paired with the next clip's audio (real speech, the wrong words).

A graft that listens has `own` far below the other two; one that ignores its audio has all three
equal. `ListeningCallback` runs the check and the WER at every evaluation and logs `eval_wer`,
`eval_cer`, `eval_loss_own_audio`, `eval_loss_zeroed_audio` and `eval_loss_shuffled_audio`.

    python -m train.evaluation.listening --model build/mini-base --adapter mini/trained/stage2 \\
        --data build/demo-corpus/devtest.jsonl --max_samples 24
"""

import argparse
import contextlib
import json

import numpy as np
import torch
from transformers import TrainerCallback

from ..stages.data import SpeechCollator
from .transcripts import evaluate_dataset

WAYS = ("own", "zeroed", "shuffled")


def audio_for(way: str, clips: list[np.ndarray]) -> list[np.ndarray]:
    """The audio each clip is scored with: its own, silence of its length, or the next clip's."""
    if way == "own":
        return clips
    if way == "zeroed":
        return [np.zeros_like(clip) for clip in clips]
    if way == "shuffled":
        return clips[1:] + clips[:1]
    raise ValueError(f"way must be one of {WAYS}, got {way!r}")


@torch.no_grad()
def listening_losses(model, processor, items: list[dict], instruction: str, batch_size: int = 8,
                     autocast=None) -> dict:  # fmt: skip
    """Mean answer-token loss over `items` ({"audio", "text"}) with their own, zeroed and shuffled audio."""
    if len(items) < 2:
        raise ValueError(f"the listening check needs at least 2 clips (to shuffle), got {len(items)}")
    collator = SpeechCollator(processor, instruction)
    was_training = model.training
    model.eval()
    losses = {}
    for way in WAYS:
        clips = audio_for(way, [item["audio"] for item in items])
        total, tokens = 0.0, 0
        for start in range(0, len(items), batch_size):
            batch_items = [{"audio": a, "text": i["text"]} for a, i in zip(clips[start : start + batch_size],
                                                                             items[start : start + batch_size])]  # fmt: skip
            batch = {k: v.to(model.device) for k, v in collator(batch_items).items()}
            with autocast() if autocast is not None else contextlib.nullcontext():
                loss = model.answer_loss(**batch).loss  # averaged over the batch's answer tokens
            count = int((batch["labels"][:, 1:] != -100).sum())
            total, tokens = total + float(loss) * count, tokens + count
        losses[way] = total / tokens
    model.train(was_training)
    return losses


def spread_indices(total: int, count: int | None) -> list[int]:
    """`count` indices spread evenly over `range(total)` (all of them when `count` is None or larger)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})


class ListeningCallback(TrainerCallback):
    """After each evaluation: the listening check on `listening_samples` eval clips spread over the set and
    the WER/CER of greedy transcripts of the eval set, appended to the log history."""

    def __init__(self, processor, dataset, data_args, batch_size):
        self.processor, self.dataset, self.data_args, self.batch_size = processor, dataset, data_args, batch_size
        self.trainer = None

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        accelerator = self.trainer.accelerator
        entry = {"step": state.global_step}
        if self.data_args.listening_samples:
            items = [self.dataset[i] for i in spread_indices(len(self.dataset), self.data_args.listening_samples)]
            losses = listening_losses(model, self.processor, items, self.data_args.instruction, self.batch_size,
                                      autocast=accelerator.autocast)  # fmt: skip
            entry.update({f"eval_loss_{way}_audio": round(value, 4) for way, value in losses.items()})
        if self.data_args.eval_wer:
            was_training = model.training
            model.eval()
            # Autocast around generation only: Whisper's feature extractor computes log-mels with torch,
            # and under CPU autocast they would come out in bf16, which numpy cannot take.
            scores, _ = evaluate_dataset(model, self.processor, self.dataset, accelerator,
                                         instruction=self.data_args.instruction, batch_size=self.batch_size,
                                         max_new_tokens=self.data_args.eval_max_new_tokens,
                                         autocast=accelerator.autocast)  # fmt: skip
            model.train(was_training)
            entry.update(eval_wer=scores["wer"], eval_cer=scores["cer"])
        state.log_history.append(entry)
        if metrics is not None:
            metrics.update({k: v for k, v in entry.items() if k != "step"})
        if state.is_world_process_zero:
            print("listening check " + json.dumps(entry), flush=True)


def main(argv=None):
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION
    from ..stages.data import SpeechDataset, load_rows
    from ..weights.loading import add_graft_arguments, load_graft

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_graft_arguments(parser)
    parser.add_argument("--data", required=True)
    parser.add_argument("--max_samples", type=int, default=24, help="clips spread evenly over the set")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)
    model, processor = load_graft(args.model, args.projector, args.adapter, dtype=getattr(torch, args.dtype))
    dataset = SpeechDataset(load_rows(args.data), processor.max_audio_seconds, limit=args.max_samples, spread=True)
    losses = listening_losses(model, processor, [dataset[i] for i in range(len(dataset))], DEFAULT_INSTRUCTION,
                              args.batch_size)  # fmt: skip
    print(json.dumps({**{f"loss_{k}_audio": round(v, 4) for k, v in losses.items()},
                      "own_over_zeroed": round(losses["own"] / losses["zeroed"], 4), "clips": len(dataset)}))  # fmt: skip
    return losses


if __name__ == "__main__":
    main()

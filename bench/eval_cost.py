"""Where an in-training evaluation's time goes: the loss pass, the listening check, the greedy transcripts.

    python -m bench.eval_cost --model build/mini-base --adapter build/mini-train/stage2/checkpoint-2000 \\
        --data build/corpus/validation.jsonl [--clips 48] [--max_new_tokens 40]

What `ListeningCallback` and Trainer's loss-only evaluation do at each `eval_steps`, with the
recipe's settings (`max_eval_samples`, `listening_samples`, `eval_max_new_tokens`, batch 8, bf16
autocast where `precision: auto` picks it), each part timed once. Prints the seconds of each part
with its result, so that a faster path can be seen to give the same losses and WER.
"""

import argparse
import functools
import json

import torch

from bench.step_profile import timed
from train.evaluation.transcripts import evaluate_dataset
from train.evaluation.listening import listening_losses
from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION
from train.stages.data import SpeechCollator, SpeechDataset, load_rows
from train.weights.loading import load_graft
from train.weights.precision import resolve_precision


def loss_pass(model, processor, items, batch_size, autocast) -> float:
    """Trainer's loss-only evaluation: the mean of the batches' answer-token losses."""
    collator, losses = SpeechCollator(processor, DEFAULT_INSTRUCTION), []
    for start in range(0, len(items), batch_size):
        batch = collator(items[start : start + batch_size])  # outside autocast: the log-mels stay float32
        with torch.no_grad(), autocast():
            losses.append(float(model.answer_loss(**batch).loss))
    return sum(losses) / len(losses)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter")
    parser.add_argument("--data", required=True)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=40)
    args = parser.parse_args(argv)
    dtype = resolve_precision("auto", use_cpu=True)
    model, processor = load_graft(args.model, adapter=args.adapter, dtype=dtype)
    model.eval()
    autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    dataset = SpeechDataset(load_rows(args.data), processor.max_audio_seconds, limit=args.clips, spread=True)
    items = [dataset[i] for i in range(len(dataset))]
    loss, loss_seconds = timed(lambda: loss_pass(model, processor, items, args.batch_size, autocast))
    losses, listening_seconds = timed(lambda: listening_losses(model, processor, items, DEFAULT_INSTRUCTION,
                                                               args.batch_size, autocast=autocast))  # fmt: skip
    (scores, _), transcript_seconds = timed(lambda: evaluate_dataset(
        model, processor, dataset, instruction=DEFAULT_INSTRUCTION, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, autocast=autocast))  # fmt: skip
    results = {"clips": len(items), "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
               "loss": {"seconds": round(loss_seconds, 1), "value": round(loss, 4)},
               "listening": {"seconds": round(listening_seconds, 1), **{way: round(v, 4) for way, v in losses.items()}},
               "transcripts": {"seconds": round(transcript_seconds, 1), "wer": round(scores["wer"], 4)},
               "total_seconds": round(loss_seconds + listening_seconds + transcript_seconds, 1)}  # fmt: skip
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

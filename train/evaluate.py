"""Transcribe a test set and score it: WER, CER and exact match after Whisper's English normaliser.

    python -m train.evaluate --model build/mini-graft --data build/corpus/devtest.jsonl --output build/eval
    python -m train.evaluate --model out/merged --dtype bfloat16 --data speechbrain/LargeScaleASR \
        --dataset_config small --split test --audio_column wav --streaming --output out/eval
    accelerate launch --num_processes 2 -m train.evaluate --model ... --data ... --output ...   # data-parallel

Clips are read, transcribed and dropped a batch at a time, so a test set of any size runs in the
memory of one batch (`--streaming` also reads a Hub dataset as it goes instead of downloading it
first). Under several processes each takes every n-th batch.

Writes `predictions.jsonl` (one clip a line: reference, hypothesis, both normalised, clip WER)
and `results.json` (the metrics, the clip counts, rows skipped and why) into `--output`.
"""

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator

from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION, decoding_beams

from .evaluation.metrics import write_jsonl
from .evaluation.transcripts import evaluate_dataset
from .stages.common import end_processes
from .stages.data import SpeechDataset, StreamingSpeechDataset, load_rows
from .weights.loading import add_graft_arguments, load_graft


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_graft_arguments(parser)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--dataset_config", help="the Hub dataset's configuration (e.g. small for LargeScaleASR)")
    parser.add_argument("--streaming", action="store_true", help="read a Hub dataset as it goes (no download first)")
    parser.add_argument("--dataset_name", help="name for the model card (default: the data path)")
    parser.add_argument("--dataset_type", help="Hub dataset id for the model card (default: the data path)")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_samples", type=int)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--num_beams", type=int,
                        help="beam search width, 1 greedy (default: the model's generation_config.num_beams, "
                             "the decoding its pipeline uses)")  # fmt: skip
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    args = parser.parse_args(argv)

    accelerator = Accelerator()
    model, processor = load_graft(args.model, args.projector, args.adapter, dtype=getattr(torch, args.dtype))
    model.to(accelerator.device)
    # a base folder with an adapter has the base's generation config (greedy for train.build's grafts)
    num_beams = args.num_beams or decoding_beams(model.generation_config)
    rows = load_rows(args.data, args.split, args.audio_column, args.text_column, streaming=args.streaming,
                     config=args.dataset_config)  # fmt: skip
    if args.streaming:
        rows = rows.take(args.max_samples) if args.max_samples else rows
        dataset = StreamingSpeechDataset(rows, processor.max_audio_seconds)
    else:
        dataset = SpeechDataset(rows, processor.max_audio_seconds, limit=args.max_samples)
    metrics, records = evaluate_dataset(model, processor, dataset, accelerator, instruction=args.instruction,
                                        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                        num_beams=num_beams, progress=True)  # fmt: skip
    if accelerator.is_main_process:
        args.output.mkdir(parents=True, exist_ok=True)
        write_jsonl(args.output / "predictions.jsonl", records)
        results = {**metrics, "dataset_name": args.dataset_name or args.data, "dataset_type": args.dataset_type or args.data,
                   "split": args.split, "num_beams": num_beams, "skipped": dict(dataset.skips),
                   "processes": accelerator.num_processes}  # fmt: skip
        (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"WER {metrics['wer']:.2%}  CER {metrics['cer']:.2%}  exact {metrics['exact_match']:.2%}  "
              f"clips {metrics['num_clips']}  {num_beams} beam(s)  ({dataset.skips.report()})")  # fmt: skip
    end_processes(accelerator)
    return metrics


if __name__ == "__main__":
    main()

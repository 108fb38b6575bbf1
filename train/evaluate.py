"""Transcribe a test set and score it: WER, CER and exact match after Whisper's English normaliser.

    python -m train.evaluate --model build/mini-graft --data build/corpus/devtest.jsonl --output build/eval
    accelerate launch --num_processes 2 -m train.evaluate --model ... --data ... --output ...   # data-parallel

Writes `predictions.jsonl` (one clip a line: reference, hypothesis, both normalised, clip WER)
and `results.json` (the metrics, the clip counts, rows skipped and why) into `--output`.
"""

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from train.data import SpeechDataset, load_rows
from train.graft import DEFAULT_INSTRUCTION, SAMPLING_RATE, build_prompt
from train.loading import load_graft
from train.metrics import clip_records, compute_metrics, write_jsonl


@torch.no_grad()
def transcribe(model, processor, clips, instruction=DEFAULT_INSTRUCTION, batch_size=8, max_new_tokens=128,
               progress=False) -> list[str]:  # fmt: skip
    """Greedy transcripts of `clips` (16 kHz float arrays), `batch_size` at a time."""
    prompt = build_prompt(processor, instruction)
    texts = []
    for start in tqdm(range(0, len(clips), batch_size), desc="transcribing", disable=not progress):
        batch = clips[start : start + batch_size]
        inputs = processor(text=[prompt] * len(batch), audio=batch, sampling_rate=SAMPLING_RATE).to(model.device)
        inputs["input_features"] = inputs["input_features"].to(model.dtype)
        out = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
        texts += processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [text.strip() for text in texts]


def evaluate_dataset(model, processor, dataset, accelerator=None, **transcribe_kwargs):
    """(metrics, per-clip records); under several processes each takes a share and rank 0 scores."""
    accelerator = accelerator or Accelerator()
    with accelerator.split_between_processes(list(range(len(dataset)))) as mine:
        items = [dataset[i] for i in mine]
        hypotheses = transcribe(model, processor, [i["audio"] for i in items],
                                progress=accelerator.is_main_process, **transcribe_kwargs)  # fmt: skip
        local = [(i["id"], i["text"], h) for i, h in zip(items, hypotheses)]
    rows = gather_object(local)
    ids, references, hypotheses = (list(column) for column in zip(*rows))
    return compute_metrics(references, hypotheses), clip_records(ids, references, hypotheses)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="graft folder (full precision)")
    parser.add_argument("--projector", help="stage 1 output folder to load the projector from")
    parser.add_argument("--adapter", help="stage 2 output folder (LoRA adapter + projector)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--dataset-name", help="name for the model card (default: the data path)")
    parser.add_argument("--dataset-type", help="Hub dataset id for the model card (default: the data path)")
    parser.add_argument("--audio-column", default="audio")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    args = parser.parse_args(argv)

    accelerator = Accelerator()
    model, processor = load_graft(args.model, args.projector, args.adapter, dtype=getattr(torch, args.dtype))
    model.to(accelerator.device)
    rows = load_rows(args.data, args.split, args.audio_column, args.text_column)
    dataset = SpeechDataset(rows, processor.max_audio_seconds, limit=args.max_samples)
    metrics, records = evaluate_dataset(model, processor, dataset, accelerator, instruction=args.instruction,
                                        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)  # fmt: skip
    if accelerator.is_main_process:
        args.output.mkdir(parents=True, exist_ok=True)
        write_jsonl(args.output / "predictions.jsonl", records)
        results = {**metrics, "dataset_name": args.dataset_name or args.data, "dataset_type": args.dataset_type or args.data,
                   "split": args.split, "skipped": dict(dataset.skips), "processes": accelerator.num_processes}  # fmt: skip
        (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"WER {metrics['wer']:.2%}  CER {metrics['cer']:.2%}  exact {metrics['exact_match']:.2%}  "
              f"clips {metrics['num_clips']}  ({dataset.skips.report()})")  # fmt: skip
    return metrics


if __name__ == "__main__":
    main()

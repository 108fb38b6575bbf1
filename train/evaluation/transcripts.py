"""Transcribing a set of clips in batches and scoring it (WER, CER, exact match), under one
process or several (each takes every n-th batch, rank 0 scores)."""

import contextlib
import itertools

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION, build_prompt

from .metrics import clip_records, compute_metrics


@torch.no_grad()
def transcribe(model, processor, clips, instruction=DEFAULT_INSTRUCTION, batch_size=8, max_new_tokens=128,
               progress=False, autocast=None, num_beams=1) -> list[str]:  # fmt: skip
    """Transcripts of `clips` (16 kHz float arrays), `batch_size` at a time, greedy unless
    `num_beams` > 1 (beam search); `autocast` (a context-manager factory, e.g.
    `accelerator.autocast`) wraps generation only: the processor's torch log-mels must stay float32."""
    prompt = build_prompt(processor, instruction)
    texts = []
    for start in tqdm(range(0, len(clips), batch_size), desc="transcribing", disable=not progress):
        batch = clips[start : start + batch_size]
        inputs = processor(text=[prompt] * len(batch), audio=batch, sampling_rate=SAMPLING_RATE).to(model.device)
        inputs["input_features"] = inputs["input_features"].to(model.dtype)
        with autocast() if autocast is not None else contextlib.nullcontext():
            out = model.generate(**inputs, do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens)
        texts += processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [text.strip() for text in texts]


def batches(dataset, batch_size: int):
    """Lists of `batch_size` items of a map-style or streamed dataset, read as they are needed."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        for start in range(0, len(dataset), batch_size):
            yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        return
    iterator = iter(dataset)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield batch


def evaluate_dataset(model, processor, dataset, accelerator=None, batch_size=8, progress=False, **transcribe_kwargs):
    """(metrics, per-clip records); under several processes each takes every n-th batch and rank 0 scores."""
    accelerator = accelerator or Accelerator()
    local = []
    total = -(-len(dataset) // batch_size) if hasattr(dataset, "__len__") else None
    mine = itertools.islice(batches(dataset, batch_size), accelerator.process_index, None, accelerator.num_processes)
    for items in tqdm(mine, desc="transcribing", unit="batch", disable=not (progress and accelerator.is_main_process),
                      total=None if total is None else -(-(total - accelerator.process_index) // accelerator.num_processes)):  # fmt: skip
        hypotheses = transcribe(model, processor, [i["audio"] for i in items], batch_size=batch_size, **transcribe_kwargs)
        local += [(i["id"], i["text"], h) for i, h in zip(items, hypotheses)]
    rows = gather_object(local)
    ids, references, hypotheses = (list(column) for column in zip(*rows))
    return compute_metrics(references, hypotheses), clip_records(ids, references, hypotheses)

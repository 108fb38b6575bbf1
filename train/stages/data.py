"""Speech-text data for training and evaluation: loading, validation with counted skips, collation.

Sources: a JSONL or CSV manifest of audio paths (relative to the manifest) and texts; an
`audiofolder` directory; or any `datasets` dataset with an Audio column and a text column (for
real runs `speechbrain/LargeScaleASR`, streamed). Audio is decoded by the pipeline's own reader
(FFmpeg's decoders through PyAV: any container), mixed to mono and resampled to 16 kHz by the
processor's own code.

Rows with missing or undecodable audio, empty text or audio over the maximum are skipped and
counted by reason; `SkipCounter.report()` says how many, and the stages write the counts out.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE, num_audio_tokens
from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION, build_prompt, load_audio


MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv")


class SkipCounter(Counter):
    """Rows skipped, by reason."""

    def report(self, what: str = "rows") -> str:
        if not self:
            return f"skipped 0 {what}"
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.items()))
        return f"skipped {sum(self.values())} {what}: {reasons}"


def load_rows(source: str, split="train", audio_column="audio", text_column="text", streaming=False, config=None):
    """A `datasets` dataset with `audio` (undecoded: path and/or bytes) and `text` columns. Several
    manifests separated by commas ("train.jsonl,digits.jsonl") are concatenated in that order. Local
    manifests are read whole, `streaming` or not; it streams a Hub dataset."""
    if "," in source:
        parts = [part.strip() for part in source.split(",")]
        if not all(Path(part).suffix in MANIFEST_SUFFIXES for part in parts):
            raise ValueError(f"expected comma-separated .jsonl/.json/.csv manifests, got {source!r}")
        return datasets.concatenate_datasets(
            [load_rows(part, split, audio_column, text_column, config=config) for part in parts])
    path = Path(source)
    if path.suffix in MANIFEST_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"No manifest at {path}")
        rows = datasets.load_dataset("csv" if path.suffix == ".csv" else "json", data_files=str(path), split="train")
        base = path.parent.resolve()
        rows = rows.map(lambda row: {audio_column: _resolve(row[audio_column], base)})
    elif path.is_dir():
        rows = datasets.load_dataset("audiofolder", data_dir=str(path), split=split)
    else:
        rows = datasets.load_dataset(source, config, split=split, streaming=streaming)
    missing = [c for c in (audio_column, text_column) if c not in (rows.column_names or [])]
    if missing:
        raise ValueError(f"{source} has no column {missing}; its columns are {rows.column_names}")
    rows = rows.cast_column(audio_column, datasets.Audio(decode=False))
    if audio_column != "audio":
        rows = rows.rename_column(audio_column, "audio")
    if text_column != "text":
        rows = rows.rename_column(text_column, "text")
    return rows


def _resolve(audio, base: Path):
    return str(base / audio) if isinstance(audio, str) and not Path(audio).is_absolute() else audio


def decode_audio(value) -> np.ndarray:
    """Undecoded `datasets` audio ({"path", "bytes"}) or a path -> float32 mono 16 kHz samples."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        raise ValueError("the row has no audio")
    return load_audio(value)


def check_row(row, max_seconds: float, skips: SkipCounter):
    """(samples, text) of a usable row, else None with the reason counted."""
    text = (row.get("text") or "").strip()
    if not text:
        skips["empty text"] += 1
        return None
    try:
        samples = decode_audio(row.get("audio"))
    except (ValueError, TypeError, RuntimeError, OSError):
        skips["missing or undecodable audio"] += 1
        return None
    if len(samples) > max_seconds * SAMPLING_RATE:
        skips[f"audio over {max_seconds:g} s"] += 1
        return None
    return samples, text


GROUPING_DOWNSAMPLE = 4  # the mini graft's audio_downsample; grouping only needs the order right


def approximate_tokens(num_samples: int, text: str) -> int:
    """A clip's sequence length for grouping batches by length: its audio tokens at `GROUPING_DOWNSAMPLE`
    plus about one token per four characters of text."""
    return (num_audio_tokens(num_samples, GROUPING_DOWNSAMPLE) if num_samples > 0 else 0) + len(text) // 4


class SpeechDataset(torch.utils.data.Dataset):
    """A map-style dataset of checked rows: every row is decoded once up front to find the broken ones.

    `limit` keeps at most that many rows: the first ones, or with `spread` rows spread evenly over
    the whole set (so an evaluation subset of a manifest sorted by voice holds every voice).
    `lengths` holds each usable row's approximate token count (`approximate_tokens`), `seconds` its duration."""

    def __init__(self, rows, max_seconds: float, limit: int | None = None, spread: bool = False):
        self.rows, self.skips, self.valid, self.lengths, self.seconds = rows, SkipCounter(), [], [], []
        if limit is not None and spread and limit < len(rows):
            candidates = sorted({int(round(i)) for i in np.linspace(0, len(rows) - 1, limit)})
        else:
            candidates = range(len(rows) if limit is None else min(limit, len(rows)))
        for index in tqdm(candidates, desc="checking audio rows", leave=False):
            checked = check_row(rows[index], max_seconds, self.skips)
            if checked is not None:
                self.valid.append(index)
                self.lengths.append(approximate_tokens(len(checked[0]), checked[1]))
                self.seconds.append(len(checked[0]) / SAMPLING_RATE)
        if not self.valid:
            raise ValueError(f"No usable rows out of {len(candidates)}: {self.skips.report()}")
        self.max_seconds = max_seconds

    def __len__(self):
        return len(self.valid)

    def __getitem__(self, index):
        row = self.rows[self.valid[index]]
        samples, text = check_row(row, self.max_seconds, SkipCounter())
        return {"audio": samples, "text": text, "id": str(row.get("id", self.valid[index]))}


class JoinedClips(torch.utils.data.Dataset):
    """Training items that hold more than one sentence: with `probability`, item i is clip i followed
    by 1 to `max_clips - 1` other clips drawn at random, joined with `gap_seconds` of silence (their
    texts with a space), as long as the whole stays within `max_seconds`; otherwise clip i alone.

    Single-sentence clips teach the model to stop after one sentence (a 41.8 s clip of eleven came
    out as one); joined items teach it to go on. The joins are drawn once from `seed`, so an item is
    the same at every epoch and `lengths` (for grouping by length) is known up front."""

    def __init__(self, clips: SpeechDataset, probability: float, max_clips: int = 3, max_seconds: float = 30.0,
                 gap_seconds: float = 0.3, seed: int = 0):  # fmt: skip
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"join_clips is a probability, between 0 and 1; got {probability}")
        if max_clips < 2:
            raise ValueError(f"join_max_clips must be at least 2 to join anything; got {max_clips}")
        self.clips, self.gap = clips, np.zeros(int(round(gap_seconds * SAMPLING_RATE)), dtype=np.float32)
        self.skips = clips.skips
        rng = np.random.default_rng(seed)
        self.plans, self.lengths = [], []
        for index in range(len(clips)):
            plan, total = [index], clips.seconds[index]
            if len(clips) > 1 and rng.random() < probability:
                for other in rng.integers(0, len(clips), size=int(rng.integers(1, max_clips))):
                    added = gap_seconds + clips.seconds[other]
                    if other != index and total + added <= max_seconds:
                        plan.append(int(other))
                        total += added
            self.plans.append(plan)
            gaps = approximate_tokens((len(plan) - 1) * len(self.gap), "")
            self.lengths.append(sum(clips.lengths[i] for i in plan) + gaps)

    def __len__(self):
        return len(self.plans)

    def __getitem__(self, index):
        items = [self.clips[i] for i in self.plans[index]]
        if len(items) == 1:
            return items[0]
        pieces = [piece for item in items for piece in (self.gap, item["audio"])][1:]
        return {"audio": np.concatenate(pieces), "text": " ".join(item["text"] for item in items),
                "id": "+".join(item["id"] for item in items)}  # fmt: skip


class StreamingSpeechDataset(torch.utils.data.IterableDataset):
    """Rows of a streamed dataset, checked on the fly; skips are counted as they pass."""

    def __init__(self, rows, max_seconds: float):
        self.rows, self.max_seconds, self.skips = rows, max_seconds, SkipCounter()

    def __iter__(self):
        for position, row in enumerate(self.rows):
            checked = check_row(row, self.max_seconds, self.skips)
            if checked is not None:
                yield {"audio": checked[0], "text": checked[1], "id": str(row.get("id", position))}


@dataclass
class SpeechCollator:
    """Chat prompt with the clip + answer; labels are the answer tokens (and `<|im_end|>`) only.

    Prompt and answer are tokenized apart and joined, as generation sees them: the model
    generates after the prompt's last token, so no tokenizer merge can cross the boundary.
    """

    processor: object
    instruction: str = DEFAULT_INSTRUCTION
    ignore_index: int = -100
    skips: SkipCounter = field(default_factory=SkipCounter)

    def __call__(self, items: list[dict]) -> dict:
        prompt = build_prompt(self.processor, self.instruction)
        tokenizer = self.processor.tokenizer
        cached = all("encoder_states" in i for i in items)  # stored encoder outputs (train.stages.encoder_cache)
        batch = self.processor(
            text=[prompt] * len(items), audio=[i["audio"] for i in items], sampling_rate=SAMPLING_RATE,
            padding=False, return_tensors=None, audio_features=not cached,  # no log-mel the encoder would not read
        )  # fmt: skip
        answers = tokenizer([i["text"] + "<|im_end|>" for i in items], add_special_tokens=False)["input_ids"]
        rows = [list(p) + list(a) for p, a in zip(batch["input_ids"], answers)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), self.ignore_index, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt_ids, answer_ids) in enumerate(zip(batch["input_ids"], answers)):
            n_prompt, n = len(prompt_ids), len(prompt_ids) + len(answer_ids)
            input_ids[i, :n] = torch.tensor(rows[i])
            labels[i, n_prompt:n] = torch.tensor(answer_ids)
            attention_mask[i, :n] = 1
        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "mm_token_type_ids": torch.zeros_like(input_ids, dtype=torch.int32),
            "input_features_mask": torch.as_tensor(np.asarray(batch["input_features_mask"])),
        }
        if cached:
            windows = [w for i in items for w in i["encoder_states"]]  # each (frames, d_model), frames vary
            out["audio_encoder_states"] = pad_sequence(windows, batch_first=True)  # (windows, longest, d_model)
        else:
            out["input_features"] = torch.as_tensor(np.asarray(batch["input_features"]))
        return out

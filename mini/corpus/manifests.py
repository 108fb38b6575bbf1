"""Corpus outputs: the train/validation/devtest manifests, their statistics and summary, the leakage
check and the clip files no manifest names.

The rule of the splits: training data is what the graft learns from; validation (voices and
recordings training never has) is what every choice of the recipe is made on; devtest is scored
and reported, and never used to choose anything. No voice, recording or sentence crosses
between them, with one exception: the real speaker of the Asterisk prompts is in training and in
validation, each prompt (and its transcript) on one side only.

``digits.jsonl`` holds the spoken digit strings, apart from ``train.jsonl`` so that a run chooses
whether to train on them (``train_data: build/corpus/train.jsonl,build/corpus/digits.jsonl``);
``devtest-digits.jsonl`` other digit strings read by the devtest voices, apart from the devtest set.
A manifest is JSONL, one clip a line: ``audio`` (path relative to the manifest), ``text``,
``source`` (tts | real), ``voice`` and ``duration`` in seconds.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from mini.corpus.text import sentence_key
from mini.corpus.voices import ALLISON_VOICE, EVAL_ONLY_VOICES

if TYPE_CHECKING:
    from mini.corpus.jobs import RunResult


SPLITS = ("train", "digits", "validation", "devtest", "devtest-digits")   # a folder and a manifest each


def write_manifest(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.part")
    with tmp.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_manifest(path: Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def base_voice(label: str) -> str:
    return label.split("+", 1)[0]


def compute_stats(records_by_split: dict[str, list[dict]], failures: list[dict]) -> dict:
    stats: dict = {}
    for split, records in records_by_split.items():
        by_voice: dict[str, list[float]] = defaultdict(list)
        for rec in records:
            by_voice[rec["voice"]].append(rec["duration"])
        stats[split] = {
            "clips": len(records),
            "hours": round(sum(r["duration"] for r in records) / 3600, 4),
            "voices": {v: {"clips": len(d), "minutes": round(sum(d) / 60, 2),
                           "hours": round(sum(d) / 3600, 4)} for v, d in sorted(by_voice.items())},
        }
    stats["failures"] = {
        "total": len(failures),
        "by_reason": dict(Counter(f"{f['split']}/{f['voice']}/{f['reason']}" for f in failures)),
        "examples": failures[:20],
    }
    return stats


def summary_table(stats: dict) -> str:
    """Clips and minutes per split and base voice (espeak variants grouped)."""
    lines = [f"{'split':14} {'voice':34} {'clips':>6} {'minutes':>8}"]
    for split in SPLITS:
        grouped: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for voice, v in stats.get(split, {}).get("voices", {}).items():
            grouped[base_voice(voice)][0] += v["clips"]
            grouped[base_voice(voice)][1] += v["minutes"]
        for voice, (clips, minutes) in sorted(grouped.items()):
            lines.append(f"{split:14} {voice:34} {clips:6d} {minutes:8.1f}")
        total = stats.get(split, {})
        lines.append(f"{split:14} {'TOTAL':34} {total.get('clips', 0):6d} "
                     f"{total.get('hours', 0) * 60:8.1f}")
    lines.append(f"failed clips: {stats['failures']['total']} {stats['failures']['by_reason']}")
    return "\n".join(lines)


def check_disjoint(train_manifest, held_out_manifest, shared_voices=()) -> None:
    """Raise ValueError if a held-out voice (other than `shared_voices`), an evaluation-only recording
    or a held-out sentence is in the training manifest. Between two held-out manifests (validation,
    devtest), the first plays the part of training."""
    train, held_out = read_manifest(train_manifest), read_manifest(held_out_manifest)
    train_voices = {r["voice"] for r in train}
    shared = sorted((train_voices & {r["voice"] for r in held_out}) - set(shared_voices))
    if shared:
        raise ValueError(f"voice crosses from {Path(held_out_manifest).stem} to {Path(train_manifest).stem}: "
                         f"expected no shared voices, got {shared}")
    eval_only = sorted({r["voice"] for r in train if r["voice"] in EVAL_ONLY_VOICES
                        or (r["source"] != "tts" and r["voice"] != ALLISON_VOICE)})
    if eval_only:
        raise ValueError(f"evaluation-only voice in {Path(train_manifest).stem}: expected only TTS voices and "
                         f"the {ALLISON_VOICE} prompts, got {eval_only}")
    held_out_keys = {sentence_key(r["text"]) for r in held_out}
    crossing = sorted({r["text"] for r in train if sentence_key(r["text"]) in held_out_keys})
    if crossing:
        raise ValueError(f"sentence crosses from {Path(held_out_manifest).stem} to {Path(train_manifest).stem}: "
                         f"expected no shared sentences, got {len(crossing)}, e.g. {crossing[0]!r}")


def write_outputs(out: Path, result: RunResult, info: dict) -> dict:
    """One manifest per split in SPLITS (records sorted by path) and stats.json into `out`; returns the
    stats."""
    by_split = {s: sorted((r for r in result.records if r["audio"].startswith(s + "/")),
                          key=lambda r: r["audio"]) for s in SPLITS}
    for split, records in by_split.items():
        write_manifest(out / f"{split}.jsonl", records)
    stats = compute_stats(by_split, result.failures)
    stats.update(info)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def stale_files(out: Path, records: list[dict], prune: bool) -> int:
    """Clips left by runs with other settings (not in the manifests); deleted if prune."""
    wanted = {r["audio"] for r in records}
    stale = [p for split in SPLITS for p in sorted((out / split).glob("*"))
             if p.is_file() and p.relative_to(out).as_posix() not in wanted]
    for path in stale if prune else []:
        path.unlink()
    return len(stale)

"""Word and character error rates for transcripts, after Whisper's English normaliser.

Run (a library module; the evaluation stage imports it):

    .venv/bin/python -c "from train.evaluation.metrics import compute_metrics as m; print(m(['Hello, World!'], ['hello word']))"

Why jiwer and not `evaluate`: `evaluate.load("wer")` fetches the metric script from the
Hugging Face Hub; the `evaluate` wheel ships no metric scripts, so offline it fails with
"Couldn't find a module script at .../wer/wer.py. Module 'wer' doesn't exist on the Hugging
Face Hub either." Its "wer" and "cer" scripts are thin wrappers around jiwer, so calling jiwer
directly gives the same numbers, works offline and drops a dependency.

The spelling map: transformers' `EnglishTextNormalizer` takes Whisper's British-to-American
spelling map (`normalizer.json` in Whisper tokenizer repos), which transformers does not ship.
The `whisper-normalizer` package ships the same file (`normalizers/english.json`); we read it
from there, without importing that package, so the normaliser is exactly Whisper's.

WER and CER are corpus-level: total edits over total reference words (characters), not a mean
of per-clip rates.
"""

import importlib.util
import json
from pathlib import Path

import jiwer
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer



def _spelling_map() -> dict:
    spec = importlib.util.find_spec("whisper_normalizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("Whisper's spelling map comes from the whisper-normalizer package: pip install whisper-normalizer")
    path = Path(spec.submodule_search_locations[0]) / "normalizers" / "english.json"
    return json.loads(path.read_text())


_NORMALIZER = EnglishTextNormalizer(english_spelling_mapping=_spelling_map())

CLIP_RECORD_KEYS = ("id", "reference", "hypothesis", "reference_normalized", "hypothesis_normalized", "wer")


def normalize(text: str) -> str:
    """Whisper's English normalisation, with leading/trailing spaces removed."""
    if not isinstance(text, str):
        raise TypeError(f"normalize expected str, got {type(text).__name__}")
    # The normaliser can leave a space where a removed filler word or bracket stood.
    return _NORMALIZER(text).strip()


def _normalize_pairs(references: list[str], hypotheses: list[str]) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"expected as many hypotheses as references, got {len(references)} references "
                         f"and {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("expected at least one reference, got none")
    norm_refs = [normalize(text) for text in references]
    for index, (raw, norm) in enumerate(zip(references, norm_refs)):
        # An empty reference has no words to divide by; jiwer would raise without saying which clip.
        if not norm:
            raise ValueError(f"reference of clip {index} normalises to empty text (raw: {raw!r})")
    return norm_refs, [normalize(text) for text in hypotheses]


def compute_metrics(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus WER, CER, exact-match rate and the raw edit counts over normalised texts."""
    norm_refs, norm_hyps = _normalize_pairs(references, hypotheses)
    words = jiwer.process_words(norm_refs, norm_hyps)
    chars = jiwer.process_characters(norm_refs, norm_hyps)
    exact = sum(ref == hyp for ref, hyp in zip(norm_refs, norm_hyps))
    return {
        "wer": words.wer,
        "cer": chars.cer,
        "exact_match": exact / len(norm_refs),
        "num_clips": len(norm_refs),
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "reference_words": words.hits + words.substitutions + words.deletions,
    }


def wer_by_group(groups: list[str], references: list[str], hypotheses: list[str]) -> dict:
    """Corpus WER of each group of clips (a voice, a source), groups sorted, then `"all"`."""
    if not len(groups) == len(references) == len(hypotheses):
        raise ValueError(f"expected one group per clip, got {len(groups)} groups for {len(references)} clips")
    table = {}
    for group in sorted(set(groups)) + ["all"]:
        picked = [i for i, g in enumerate(groups) if group in ("all", g)]
        table[group] = compute_metrics([references[i] for i in picked], [hypotheses[i] for i in picked])["wer"]
    return table


def clip_records(ids: list[str], references: list[str], hypotheses: list[str]) -> list[dict]:
    """One record per clip, shaped for `write_jsonl`, with that clip's own WER."""
    if len(ids) != len(references):
        raise ValueError(f"expected one id per reference, got {len(ids)} ids and {len(references)} references")
    norm_refs, norm_hyps = _normalize_pairs(references, hypotheses)
    return [
        {
            "id": clip_id,
            "reference": ref,
            "hypothesis": hyp,
            "reference_normalized": norm_ref,
            "hypothesis_normalized": norm_hyp,
            "wer": jiwer.wer(norm_ref, norm_hyp),
        }
        for clip_id, ref, hyp, norm_ref, norm_hyp in zip(ids, references, hypotheses, norm_refs, norm_hyps)
    ]


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write per-clip records, one JSON object a line, keeping non-ASCII text readable."""
    for index, row in enumerate(rows):
        missing = [key for key in CLIP_RECORD_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {index} lacks keys {missing}; expected {list(CLIP_RECORD_KEYS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

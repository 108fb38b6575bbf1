"""`make demo`: assemble the mini graft from the committed trained pieces and score it.

    python -m mini.demo assemble   # build/mini-base (train.build) + mini/trained -> build/mini-graft (train.merge)
    python -m mini.demo score      # fresh process: stock pipeline() on the dev-test clips, beside Whisper base
    python -m mini.demo keep [--run DIR] [--stage1 DIR]   # (make demo-train) choose on validation, keep in mini/trained
    python -m mini.demo spread --runs RUN RUN...   # (make seed-spread) the recipe's runs under other seeds, on validation
    python -m mini.demo compare --predictions DIR/predictions.jsonl   # pipeline transcripts == train.evaluate's?
    python -m mini.demo voices [--out DIR]   # flite slt's dev-test texts read by two training voices, for train.evaluate

`score` loads `build/mini-graft` only through `pipeline("automatic-speech-recognition",
trust_remote_code=True)`, transcribes every dev-test clip (real recordings and the held-out TTS
voices) and one clip over 30 s made by joining dev-test clips, prints each reference and
hypothesis, and a table of WER per source for the graft beside Whisper base with its own decoder
on the same clips, at the graft's beam width. The same figures go to `build/demo-results.json`.

Decoding: `mini/trained/generation_config.json` holds the settings (the beam width, chosen by
`keep` on validation) that `assemble` writes over the base's generation config; the pipeline
decodes with them.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE

TRAINED = Path(__file__).resolve().parent / "trained"
COMPONENTS = Path("build/components")
BASE, GRAFT = Path("build/mini-base"), Path("build/mini-graft")
DEVTEST = Path("build/demo-corpus/devtest.jsonl")
CORPUS = Path("build/corpus")
VALIDATION = CORPUS / "validation.jsonl"
LONGFORM = Path("build/longform/devtest.jsonl")
BEAMS = 4  # the beam width `keep` tries against greedy on validation
VOICES_OUT = Path("build/trainvoice-devtest")  # where `voices` writes by default
RESULTS = Path("build/demo-results.json")
RECIPE_KEYS = ("audio_downsample", "projector_type", "projector_norm", "encode_padding")  # the base they trained on
DECODING = "generation_config.json"  # in mini/trained: settings over the base's generation config


def assemble() -> None:
    from train.build import compose
    from train.merge import merge_and_save

    recipe = json.loads((TRAINED / "recipe.json").read_text())
    wanted = {key: recipe[key] for key in RECIPE_KEYS}
    system_prompt = recipe.get("system_prompt", True)  # pieces trained before the key was recorded had one
    built = json.loads((BASE / "config.json").read_text()) if (BASE / "config.json").exists() else {}
    if any(built.get(key) != value for key, value in wanted.items()) or built_system_prompt() != system_prompt:
        compose(COMPONENTS / "qwen2.5-coder-0.5b-instruct", COMPONENTS / "whisper-base", BASE, wanted["audio_downsample"],
                wanted["projector_type"], max_audio_seconds=120.0, dtype=torch.float32,
                projector_norm=wanted["projector_norm"], encode_padding=wanted["encode_padding"],
                system_prompt=system_prompt)  # fmt: skip
    adapter = TRAINED / "stage2" if (TRAINED / "stage2" / "adapter_config.json").exists() else None
    projector = TRAINED / "stage1" if adapter is None else None
    error = merge_and_save(GRAFT, BASE, projector, adapter, max_shard_size="500MB", decoding=apply_decoding)
    print(f"merged {adapter or projector} into {BASE} and saved {GRAFT}: reloaded, its logits are within "
          f"{error:.1e} of the unmerged model's")


def built_system_prompt(base: Path = BASE) -> bool | None:
    """Whether the graft in `base` gives prompts Qwen2-VL's default system message (`train.build
    --no_system_prompt` builds one that does not); None where no graft is there."""
    from qwen2_audio_graft.processing_qwen2_audio_graft import DEFAULT_SYSTEM_PROMPT, chat_template

    path = base / "chat_template.jinja"
    if not path.exists():
        return None
    template = path.read_text()
    if template not in (chat_template(), chat_template(None)):
        raise ValueError(f"{path} is neither chat template train.build writes: rebuild {base}")
    return DEFAULT_SYSTEM_PROMPT in template


def apply_decoding(generation_config, trained: Path | None = None):
    """`generation_config` with the settings of `trained/generation_config.json` (mini/trained's)
    written over it, where that file exists; an unknown or invalid setting raises."""
    path = (trained or TRAINED) / DECODING
    if path.exists():
        settings = json.loads(path.read_text())
        unknown = generation_config.update(**settings)  # what it has no field for
        if unknown:
            raise ValueError(f"{path}: not generation settings: {sorted(unknown)}")
        generation_config.validate(strict=True)
    return generation_config


def load_clips(manifest: Path = DEVTEST) -> list[dict]:
    """The manifest's rows, each with its 16 kHz audio in "samples"."""
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["samples"] = load_audio(manifest.parent / row["audio"])
    return rows


def long_clip(rows: list[dict], seconds: float = 40.0) -> dict:
    """Real recordings joined (with 0.3 s gaps) until the clip is over `seconds`."""
    pieces, texts, total = [], [], 0.0
    for row in sorted((r for r in rows if r["source"] == "real"), key=lambda r: -len(r["samples"])):
        pieces += [row["samples"], np.zeros(int(0.3 * SAMPLING_RATE), dtype=np.float32)]
        texts.append(row["text"])
        total += len(row["samples"]) / SAMPLING_RATE + 0.3
        if total > seconds:
            break
    return {"samples": np.concatenate(pieces), "text": " ".join(texts), "voice": "joined real", "source": "real"}


def whisper_base(rows: list[dict], batch_size=8, num_beams=1) -> list[str]:
    from tqdm.auto import tqdm

    from mini.longform import load_whisper

    model, processor = load_whisper(str(COMPONENTS / "whisper-base"), num_beams)
    texts = []
    for start in tqdm(range(0, len(rows), batch_size), desc="Whisper base", unit="batch"):
        batch = [r["samples"] for r in rows[start : start + batch_size]]
        inputs = processor(batch, sampling_rate=SAMPLING_RATE, return_tensors="pt", return_attention_mask=True)
        with torch.no_grad():
            ids = model.generate(inputs.input_features, attention_mask=inputs.attention_mask)
        texts += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return texts


def wer_table(rows, graft, whisper) -> dict:
    from train.evaluation.metrics import wer_by_group

    voices, refs = [r["voice"] for r in rows], [r["text"] for r in rows]
    ours, theirs = wer_by_group(voices, refs, graft), wer_by_group(voices, refs, whisper)
    return {voice: {"clips": sum(voice in ("all", v) for v in voices), "graft_wer": ours[voice],
                    "whisper_base_wer": theirs[voice]} for voice in ours}  # fmt: skip


def transcribe_all(asr, clips, desc: str, **kwargs) -> list[dict]:
    """The pipeline's outputs for `clips`, with a progress bar."""
    from tqdm.auto import tqdm

    # A generator, not a list: the pipeline then yields each output as it is done (a list returns all at the end).
    return list(tqdm(asr((clip for clip in clips), **kwargs), total=len(clips), desc=desc, unit="clip"))


def long_recording(asr, num_beams: int) -> dict | None:
    """The first recording of the long-form dev-test set (about 2 minutes): the graft's segmented
    transcript with timestamps beside Whisper base's own sequential long-form decoding."""
    from mini.longform import load, timestamp_errors, whisper_long_form
    from train.evaluation.metrics import compute_metrics

    if not LONGFORM.exists():
        return None
    (row,) = load(LONGFORM, limit=1)
    started = time.time()
    out = asr(row["samples"], return_timestamps=True, batch_size=8)
    seconds = time.time() - started
    errors = timestamp_errors(row["sentences"], out["chunks"])
    (theirs,) = whisper_long_form(num_beams, str(COMPONENTS / "whisper-base"))([row["samples"]])
    return {"seconds": row["duration"], "sentences": len(row["sentences"]), "chunks_found": len(out["chunks"]),
            "wer": compute_metrics([row["text"]], [out["text"]])["wer"],
            "whisper_base_wer": compute_metrics([row["text"]], [theirs])["wer"],
            "timestamp_error_median": round(float(np.median(errors)), 3),
            "timestamp_error_p90": round(float(np.percentile(errors, 90)), 3), "real_time_factor": round(seconds / row["duration"], 3),
            "chunks": out["chunks"]}  # fmt: skip


def score(batch_size: int = 8) -> dict:
    from transformers import pipeline

    from qwen2_audio_graft.pipeline_qwen2_audio_graft import decoding_beams
    from train.evaluation.metrics import compute_metrics

    rows = load_clips()
    asr = pipeline("automatic-speech-recognition", model=str(GRAFT), trust_remote_code=True)
    started = time.time()
    graft = [out["text"] for out in transcribe_all(asr, [r["samples"] for r in rows], "mini graft", batch_size=batch_size,
                                                   max_new_tokens=64)]  # fmt: skip
    graft_seconds = time.time() - started
    num_beams = decoding_beams(asr.model.generation_config)
    whisper = whisper_base(rows, batch_size, num_beams)
    for row, hyp, base in zip(rows, graft, whisper):
        print(f"[{row['voice']}]\n  REF    {row['text']}\n  GRAFT  {hyp}\n  WHISPER {base}")
    joined = long_clip(rows)
    ways = {"segmented": asr(joined["samples"], batch_size=batch_size)["text"],
            "whole": asr(joined["samples"], segment_audio=False, max_new_tokens=200)["text"]}
    for way, text in ways.items():
        print(f"[{len(joined['samples']) / SAMPLING_RATE:.1f} s joined clip, {way}]\n  REF    {joined['text']}\n  GRAFT  {text}")
    recording = long_recording(asr, num_beams)
    results = {"per_source": wer_table(rows, graft, whisper), "graft_seconds": round(graft_seconds, 1),
               "num_beams": num_beams,
               "clips": [{"voice": r["voice"], "reference": r["text"], "graft": g, "whisper_base": w}
                         for r, g, w in zip(rows, graft, whisper)],
               "long_clip": {"seconds": round(len(joined["samples"]) / SAMPLING_RATE, 1), "reference": joined["text"],
                             **{f"{way}_hypothesis": text for way, text in ways.items()},
                             **{f"{way}_wer": compute_metrics([joined["text"]], [text])["wer"] for way, text in ways.items()}},
               "long_recording": recording}  # fmt: skip
    decoding = "greedy" if num_beams == 1 else f"beam search, {num_beams} beams"
    print(f"\n{decoding}, both models; the graft took {graft_seconds:.0f} s for the {len(rows)} clips")
    print("\n| source | clips | mini graft WER | Whisper base WER |\n|---|---|---|---|")
    for voice, row in results["per_source"].items():
        print(f"| {voice} | {row['clips']} | {row['graft_wer']:.1%} | {row['whisper_base_wer']:.1%} |")
    joined_wer = results["long_clip"]
    print(f"| {joined_wer['seconds']} s joined clip, in segments / whole | 1 | {joined_wer['segmented_wer']:.1%} / "
          f"{joined_wer['whole_wer']:.1%} | - |")
    if recording:
        print(f"| {recording['seconds']:.0f} s recording, {recording['sentences']} sentences, in segments | 1 | "
              f"{recording['wer']:.1%} | {recording['whisper_base_wer']:.1%} (sequential long-form) |")
        print(f"\nthe recording's {recording['chunks_found']} chunks start a median {recording['timestamp_error_median']} s "
              f"(90th percentile {recording['timestamp_error_p90']} s) from the sentence starts after a pause; "
              f"real-time factor {recording['real_time_factor']}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return results


def compare(predictions: Path) -> int:
    """How many of the demo's pipeline transcripts (build/demo-results.json) equal those of a
    `train.evaluate` run on the same dev-test clips (its predictions.jsonl); prints the others."""
    clips = json.loads(RESULTS.read_text())["clips"]
    other = [json.loads(line)["hypothesis"] for line in predictions.read_text().splitlines()]
    if len(other) != len(clips):
        raise ValueError(f"{predictions} holds {len(other)} clips, the demo {len(clips)}")
    same = 0
    for clip, hypothesis in zip(clips, other):
        if clip["graft"].strip() == hypothesis.strip():
            same += 1
        else:
            print(f"[{clip['voice']}] differs\n  PIPELINE {clip['graft']}\n  EVALUATE {hypothesis}")
    print(f"{same} of {len(clips)} transcripts identical")
    return same


def copy_as_bf16(source: Path, target: Path) -> None:
    """A safetensors file with its floating-point tensors stored in bfloat16 (half the bytes of
    float32 training output; the pieces load into a model of any dtype)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(source)).items()}
    save_file(tensors, str(target), metadata=metadata)


def candidates(run: Path) -> dict[str, Path]:
    """The pieces a run offers to keep: its end, and the EMA of its weights where it kept one (train.stages.ema)."""
    from train.stages.ema import EMA_FOLDER

    if not (run / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run} holds no adapter: expected a finished stage-2 run (adapter_config.json)")
    found = {"end": run}
    if (run / EMA_FOLDER / "adapter_config.json").exists():
        found["ema"] = run / EMA_FOLDER
    return found


def validation_scores(pieces: dict[str, Path], rows: list[dict], num_beams: int = 1) -> dict[str, dict]:
    """WER/CER (overall and by source) of each candidate's greedy or beam transcripts of `rows`."""
    from train.evaluation.transcripts import transcribe
    from train.weights.loading import load_graft
    from train.evaluation.metrics import compute_metrics, wer_by_group
    from train.weights.precision import resolve_precision

    dtype = resolve_precision("auto", use_cpu=True)
    scores = {}
    for name, folder in pieces.items():
        model, processor = load_graft(BASE, adapter=folder, dtype=dtype)
        texts = transcribe(model, processor, [r["samples"] for r in rows], max_new_tokens=64, num_beams=num_beams,
                           progress=True)  # fmt: skip
        metrics = compute_metrics([r["text"] for r in rows], texts)
        by_source = wer_by_group([r["voice"] for r in rows], [r["text"] for r in rows], texts)
        scores[name] = {"wer": metrics["wer"], "cer": metrics["cer"], "by_source": by_source, "transcripts": texts}
        print(f"validation, {name}, {num_beams} beam(s): WER {metrics['wer']:.2%}, CER {metrics['cer']:.2%}")
    return scores


def choose(wer: dict[str, float]) -> str:
    """The candidate of the lowest validation WER; between equals, the run's end (it needs no average)."""
    return min(wer, key=lambda name: (wer[name], name != "end"))


def greedy_wer(scores: dict[str, dict]) -> dict[str, float]:
    """Each candidate's WER of `validation_scores`, rounded as recipe.json records it."""
    return {name: round(s["wer"], 4) for name, s in scores.items()}


def recorded_greedy_wer(recipe: Path, clips: int) -> dict[str, float]:
    """The greedy validation WER of each candidate that `keep` recorded in a recipe.json for the run it kept."""
    validation = json.loads(recipe.read_text()).get("validation", {})
    if validation.get("clips") != clips or "greedy_wer" not in validation:
        raise ValueError(f"{recipe} records no greedy validation WER of {clips} clips: "
                         f"expected the recipe.json that mini.demo keep writes")  # fmt: skip
    return validation["greedy_wer"]


def listening_check(pieces: Path, rows: list[dict]) -> dict:
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION
    from train.evaluation.listening import listening_losses
    from train.weights.loading import load_graft

    model, processor = load_graft(BASE, adapter=pieces, dtype=torch.float32)
    losses = listening_losses(model, processor, [{"audio": r["samples"], "text": r["text"]} for r in rows],
                              DEFAULT_INSTRUCTION)  # fmt: skip
    return {**{way: round(value, 4) for way, value in losses.items()},
            "own_over_zeroed": round(losses["own"] / losses["zeroed"], 4)}


def last_state(folder: Path) -> dict | None:
    """trainer_state.json of the last checkpoint (by step) in `folder`."""
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return json.loads(states[-1].read_text()) if states else None


def keep(run: Path = Path("build/mini-train/stage2"), validation: Path = VALIDATION, stage1: Path | None = None,
         corpus: Path = CORPUS) -> dict:  # fmt: skip
    """Choose on the validation split what to keep of a finished run, and copy it into mini/trained.

    The choices, each on validation (never on dev-test): the run's end or the EMA of its weights
    (the lower greedy WER), then greedy or 4-beam decoding for the chosen pieces (written to
    mini/trained/generation_config.json). The pieces go in bfloat16 with the run's loss plot; the
    listening check and the WER of every validation source beside Whisper base's, the hardware and
    versions go to recipe.json, with the time: `training_seconds`, the seconds every stage trained
    (the stage 2 `run`, and the `stage1` run that gave its projector, if any), each summed over the
    parts a cut-off run was continued in; and apart, the corpus's own making (`corpus`/stats.json)."""
    import datetime
    import shutil

    from train.stages.clock import trained_seconds, training_parts
    from train.weights.precision import hardware

    rows = load_clips(validation)
    greedy = validation_scores(candidates(run), rows)
    chosen = choose(greedy_wer(greedy))
    pieces = candidates(run)[chosen]
    beams = validation_scores({chosen: pieces}, rows, num_beams=BEAMS)[chosen]
    num_beams = BEAMS if beams["wer"] < greedy[chosen]["wer"] else 1
    whisper = whisper_base(rows, num_beams=num_beams)
    ours = (beams if num_beams == BEAMS else greedy[chosen])["transcripts"]
    whisper_by_source = wer_table(rows, ours, whisper)
    state = last_state(run) or {}
    stages = [run] if stage1 is None else [stage1, run]
    seconds = [trained_seconds(stage) for stage in stages]  # each over all its parts, where continued with --resume
    parts = [training_parts(stage) for stage in stages]
    shutil.rmtree(TRAINED, ignore_errors=True)
    (TRAINED / "stage2").mkdir(parents=True)
    copy_as_bf16(pieces / "adapter_model.safetensors", TRAINED / "stage2" / "adapter_model.safetensors")
    shutil.copy(pieces / "adapter_config.json", TRAINED / "stage2" / "adapter_config.json")
    shutil.copy(run / "training.png", TRAINED / "stage2" / "training.png")
    (TRAINED / DECODING).write_text(json.dumps({"num_beams": num_beams}, indent=2) + "\n")
    config = json.loads((BASE / "config.json").read_text())
    recipe = {**{key: config[key] for key in RECIPE_KEYS}, "system_prompt": built_system_prompt(),
              "date": datetime.date.today().isoformat(),
              "command": "make demo-train", "config": "train/configs/mini_stage2.yaml", "hardware": hardware(),
              "steps": state.get("global_step"),
              "training_seconds": None if None in seconds else round(sum(seconds)),
              "training_parts": None if None in parts else sum(parts), "corpus": corpus_time(corpus),
              "kept": chosen, "num_beams": num_beams,
              "validation": {"clips": len(rows),
                             "greedy_wer": greedy_wer(greedy),
                             f"{BEAMS}_beams_wer": round(beams["wer"], 4),
                             "by_source": rounded(whisper_by_source),
                             "listening": listening_check(pieces, rows)},
              "evaluations": evaluations(state.get("log_history", []))}  # fmt: skip
    (TRAINED / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    total = sum(p.stat().st_size for p in TRAINED.rglob("*") if p.is_file())
    print(f"kept {chosen} of {run} ({num_beams} beam(s)) in {TRAINED}: {total / 2**20:.1f} MiB; "
          f"validation WER {greedy[chosen]['wer']:.2%} greedy, {beams['wer']:.2%} with {BEAMS} beams")
    if total > 16 * 2**20:
        raise ValueError(f"the trained pieces take {total / 2**20:.1f} MiB; at most 16 MiB go in git")
    return recipe


def spread(runs: list[Path], validation: Path = VALIDATION, out: Path = Path("build/mini-train/spread.json")) -> dict:
    """The seed-to-seed spread: each run (the same recipe, another seed) scored greedy on validation as `keep`
    scores it (its end and its EMA, the lower kept), and the distance between the best and the worst, in
    WER points and in words of the validation references. A later change smaller than it is noise.

    A run is a finished run's folder, or the recipe.json that `keep` wrote for the run it kept
    (mini/trained/recipe.json): its recorded scores are used instead of scoring the run again."""
    rows = load_clips(validation)
    words = sum(len(row["text"].split()) for row in rows)
    found = {}
    for run in runs:
        if run.suffix == ".json":
            wer = recorded_greedy_wer(run, len(rows))
        else:
            wer = greedy_wer(validation_scores(candidates(run), rows))
        chosen = choose(wer)
        found[str(run)] = {"greedy_wer": wer, "kept": chosen, "wer": wer[chosen]}
    wers = [run["wer"] for run in found.values()]
    result = {"validation": str(validation), "clips": len(rows), "words": words, "runs": found,
              "spread_points": round(100 * (max(wers) - min(wers)), 2),
              "spread_words": round((max(wers) - min(wers)) * words)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"seed-to-seed spread over {len(runs)} runs: {result['spread_points']} WER points "
          f"({result['spread_words']} words of {words}), {out}")
    return result


def rounded(table: dict) -> dict:
    return {key: rounded(value) if isinstance(value, dict) else round(value, 4) if isinstance(value, float) else value
            for key, value in table.items()}


def corpus_time(corpus: Path = CORPUS) -> dict | None:
    """The corpus's making as `mini.make_corpus` recorded it: the seconds summed over every run of its settings
    (`mini.corpus.clock`) and how many runs, the clips its last run found already made, and its extra text
    source or None; None where `corpus` has no stats.json."""
    stats = corpus / "stats.json"
    if not stats.exists():
        return None
    info = json.loads(stats.read_text())
    return {"seconds": info.get("making_seconds"), "runs": info.get("making_runs"),
            "reused_clips": info.get("reused_clips"), "extra_text": info.get("extra_text")}


CHECK_KEYS = ("eval_loss_own_audio", "eval_loss_zeroed_audio", "eval_loss_shuffled_audio", "eval_wer", "eval_cer")


def evaluations(log_history: list[dict]) -> list[dict]:
    """The listening check and validation WER of each evaluation in a run's log history."""
    return [{"step": e["step"], **{k: round(e[k], 4) for k in CHECK_KEYS if k in e}}
            for e in log_history if "eval_wer" in e]  # fmt: skip


def training_voices(out: Path, manifest: Path = DEVTEST, source_voice: str = "flite-slt",
                    voices=("flite-awb", "flite-rms"), max_texts: int | None = None) -> Path:
    """The texts `source_voice` reads in `manifest` (the first `max_texts` of them, or all) spoken
    by training `voices` (plain: no tempo, pitch, reverb or noise), made by the corpus's own job
    runner into `out/devtest.jsonl`: does the graft's error follow the voice or the text? With the
    training manifest, the same for texts the graft trained on (docs/mini-graft.md, "Held-out voice
    or unseen text")."""
    from mini.corpus.clip import ClipJob
    from mini.corpus.jobs import generate
    from mini.corpus.manifests import read_manifest, write_manifest

    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be at least 1, got {max_texts}")
    texts = [row["text"] for row in read_manifest(manifest) if row["voice"] == source_voice]
    if not texts:
        raise ValueError(f"{manifest} holds no {source_voice} clips")
    texts = texts[:max_texts]
    jobs = [ClipJob("devtest", index, voice, text) for voice in voices for index, text in enumerate(texts)]
    result = generate(jobs, out)
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} clips failed, the first: {result.failures[0]}")
    write_manifest(out / "devtest.jsonl", result.records)
    return out / "devtest.jsonl"

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("assemble", "score", "keep", "spread", "compare", "voices"))
    parser.add_argument("--out", type=Path, default=VOICES_OUT, help="with voices: where to write")
    parser.add_argument("--manifest", type=Path, default=DEVTEST, help="with voices: whose texts to read")
    parser.add_argument("--source_voice", default="flite-slt", help="with voices: the manifest voice whose texts are read")
    parser.add_argument("--max_texts", type=int, default=None, help="with voices: read only the first N texts")
    parser.add_argument("--validation", type=Path, default=VALIDATION, help="with keep: the validation manifest")
    parser.add_argument("--predictions", type=Path, help="with compare: a train.evaluate predictions.jsonl")
    parser.add_argument("--run", type=Path, default=Path("build/mini-train/stage2"), help="with keep: the run to keep")
    parser.add_argument("--stage1", type=Path, help="with keep: the stage 1 run that gave the run its projector")
    parser.add_argument("--runs", type=Path, nargs="+",
                        help="with spread: the recipe's runs under different seeds (a run's folder, or keep's recipe.json)")
    args = parser.parse_args(argv)
    if args.step == "compare":
        compare(args.predictions)
    elif args.step == "voices":
        written = training_voices(args.out, args.manifest, args.source_voice, max_texts=args.max_texts)
        scored = "eval-trainvoices" if args.out == VOICES_OUT else f"eval-{args.out.name}"
        print(f"wrote {written}; score it with python -m train.evaluate --model {GRAFT} --data {written} "
              f"--max_new_tokens 64 --output build/mini-train/{scored}")  # fmt: skip
    elif args.step == "keep":
        keep(args.run, args.validation, args.stage1)
    elif args.step == "spread":
        if not args.runs or len(args.runs) < 2:
            parser.error("spread needs at least two --runs")
        spread(args.runs, args.validation)
    else:
        assemble() if args.step == "assemble" else score()


if __name__ == "__main__":
    main()

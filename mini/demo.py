"""`make demo`: assemble the mini graft from the committed trained pieces and score it.

    python -m mini.demo assemble   # build/mini-base (train.build) + mini/trained -> build/mini-graft (train.merge)
    python -m mini.demo score      # fresh process: stock pipeline() on the dev-test clips, beside Whisper base
    python -m mini.demo keep [--run DIR] [--continues]   # (make demo-train) the trained pieces into mini/trained
    python -m mini.demo compare --predictions DIR/predictions.jsonl   # pipeline transcripts == train.evaluate's?
    python -m mini.demo voices [--out DIR]   # flite slt's dev-test texts read by two training voices, for train.evaluate

`score` loads `build/mini-graft` only through `pipeline("automatic-speech-recognition",
trust_remote_code=True)`, transcribes every dev-test clip (real recordings and the held-out TTS
voices) and one clip over 30 s made by joining dev-test clips, prints each reference and
hypothesis, and a table of WER per source for the graft beside Whisper base with its own decoder
on the same clips, at the graft's beam width. The same figures go to `build/demo-results.json`.

Decoding: `mini/trained/generation_config.json` holds the settings (the beam width) that
`assemble` writes over the base's generation config; the pipeline decodes with them.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

TRAINED = Path(__file__).resolve().parent / "trained"
COMPONENTS = Path("build/components")
BASE, GRAFT = Path("build/mini-base"), Path("build/mini-graft")
DEVTEST = Path("build/demo-corpus/devtest.jsonl")
VOICES_OUT = Path("build/trainvoice-devtest")  # where `voices` writes by default
RESULTS = Path("build/demo-results.json")
RECIPE_KEYS = ("audio_downsample", "projector_type", "projector_norm", "encode_padding")  # the base they trained on
RECIPE_DEFAULTS = {"projector_norm": False, "encode_padding": True}  # what pieces older than a key were trained with
DECODING = "generation_config.json"  # in mini/trained: settings over the base's generation config
GRAFT_DECODING = ("audio_guidance_scale",)  # settings the graft's own generate reads, beside transformers' fields


def assemble() -> None:
    from train.build import compose
    from train.merge import merge, save_checked

    recipe = json.loads((TRAINED / "recipe.json").read_text())
    wanted = {key: recipe.get(key, RECIPE_DEFAULTS.get(key)) for key in RECIPE_KEYS}
    built = json.loads((BASE / "config.json").read_text()) if (BASE / "config.json").exists() else {}
    if any(built.get(key) != value for key, value in wanted.items()):
        compose(COMPONENTS / "qwen2.5-coder-0.5b-instruct", COMPONENTS / "whisper-base", BASE, wanted["audio_downsample"],
                wanted["projector_type"], max_audio_seconds=120.0, dtype=torch.float32,
                projector_norm=wanted["projector_norm"], encode_padding=wanted["encode_padding"])  # fmt: skip
    adapter = TRAINED / "stage2" if (TRAINED / "stage2" / "adapter_config.json").exists() else None
    projector = TRAINED / "stage1" if adapter is None else None
    model, processor = merge(BASE, projector=projector, adapter=adapter)
    apply_decoding(model.generation_config)
    error = save_checked(model, processor, GRAFT, BASE, projector, adapter, max_shard_size="500MB")
    print(f"merged {adapter or projector} into {BASE} and saved {GRAFT}: reloaded, its logits are within "
          f"{error:.1e} of the unmerged model's")


def apply_decoding(generation_config, trained: Path | None = None):
    """`generation_config` with the settings of `trained/generation_config.json` (mini/trained's)
    written over it, where that file exists; an unknown or invalid setting raises."""
    path = (trained or TRAINED) / DECODING
    if path.exists():
        settings = json.loads(path.read_text())
        for key in GRAFT_DECODING:
            if key in settings:
                setattr(generation_config, key, settings.pop(key))
        unknown = generation_config.update(**settings)  # what it has no field for
        if unknown:
            raise ValueError(f"{path}: not generation settings: {sorted(unknown)}")
        generation_config.validate(strict=True)
    return generation_config


def load_devtest(manifest: Path = DEVTEST) -> list[dict]:
    """The manifest's rows, each with its 16 kHz audio in "samples"."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        samples, rate = soundfile.read(manifest.parent / row["audio"], dtype="float32")
        if rate != 16000:
            raise ValueError(f"{row['audio']}: expected 16 kHz dev-test audio, got {rate} Hz")
        row["samples"] = samples
    return rows


def long_clip(rows: list[dict], seconds: float = 40.0) -> dict:
    """Real recordings joined (with 0.3 s gaps) until the clip is over `seconds`."""
    pieces, texts, total = [], [], 0.0
    for row in sorted((r for r in rows if r["source"] == "real"), key=lambda r: -len(r["samples"])):
        pieces += [row["samples"], np.zeros(4800, dtype=np.float32)]
        texts.append(row["text"])
        total += len(row["samples"]) / 16000 + 0.3
        if total > seconds:
            break
    return {"samples": np.concatenate(pieces), "text": " ".join(texts), "voice": "joined real", "source": "real"}


def whisper_base(rows: list[dict], batch_size=8, num_beams=1) -> list[str]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(COMPONENTS / "whisper-base").eval()
    processor = WhisperProcessor.from_pretrained(COMPONENTS / "whisper-base")
    texts = []
    for start in range(0, len(rows), batch_size):
        batch = [r["samples"] for r in rows[start : start + batch_size]]
        features = processor(batch, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, language="en", task="transcribe", num_beams=num_beams, do_sample=False)
        texts += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return texts


def wer_table(rows, graft, whisper) -> dict:
    from train.metrics import wer_by_group

    voices, refs = [r["voice"] for r in rows], [r["text"] for r in rows]
    ours, theirs = wer_by_group(voices, refs, graft), wer_by_group(voices, refs, whisper)
    return {voice: {"clips": sum(voice in ("all", v) for v in voices), "graft_wer": ours[voice],
                    "whisper_base_wer": theirs[voice]} for voice in ours}  # fmt: skip


def score(batch_size: int = 8) -> dict:
    from transformers import pipeline

    from train.evaluate import decoding_beams, guidance_scale
    from train.metrics import compute_metrics

    rows = load_devtest()
    asr = pipeline("automatic-speech-recognition", model=str(GRAFT), trust_remote_code=True)
    started = time.time()
    graft = [out["text"] for out in asr([r["samples"] for r in rows], batch_size=batch_size, max_new_tokens=64)]
    graft_seconds = time.time() - started
    num_beams, guidance = decoding_beams(asr.model), guidance_scale(asr.model)
    whisper = whisper_base(rows, batch_size, num_beams)
    for row, hyp, base in zip(rows, graft, whisper):
        print(f"[{row['voice']}]\n  REF    {row['text']}\n  GRAFT  {hyp}\n  WHISPER {base}")
    joined = long_clip(rows)
    joined_hyp = asr(joined["samples"], max_new_tokens=200)["text"]
    print(f"[{len(joined['samples']) / 16000:.1f} s joined clip]\n  REF    {joined['text']}\n  GRAFT  {joined_hyp}")
    results = {"per_source": wer_table(rows, graft, whisper), "graft_seconds": round(graft_seconds, 1),
               "num_beams": num_beams, "audio_guidance_scale": guidance,
               "clips": [{"voice": r["voice"], "reference": r["text"], "graft": g, "whisper_base": w}
                         for r, g, w in zip(rows, graft, whisper)],
               "long_clip": {"seconds": round(len(joined["samples"]) / 16000, 1), "reference": joined["text"],
                             "hypothesis": joined_hyp,
                             "wer": compute_metrics([joined["text"]], [joined_hyp])["wer"]}}  # fmt: skip
    decoding = "greedy" if num_beams == 1 else f"beam search, {num_beams} beams"
    decoding += "" if guidance == 1 else f" (the graft with audio guidance {guidance:g})"
    print(f"\n{decoding}, both models; the graft took {graft_seconds:.0f} s for the {len(rows)} clips")
    print("\n| source | clips | mini graft WER | Whisper base WER |\n|---|---|---|---|")
    for voice, row in results["per_source"].items():
        print(f"| {voice} | {row['clips']} | {row['graft_wer']:.1%} | {row['whisper_base_wer']:.1%} |")
    print(f"| {results['long_clip']['seconds']} s joined clip, whole | 1 | {results['long_clip']['wer']:.1%} | - |")
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


def training_segments(run: Path, continues: dict | None = None) -> list[dict]:
    """The run's `train()` calls as its stage recorded them (`segments.json`: steps, samples seen,
    seconds, command); after the segments of `continues` (the recipe.json of the pieces the run
    started from with `--init_adapter`), its steps shifted to follow theirs."""
    from train.stages import SEGMENTS_FILE, segment_steps

    path = run / SEGMENTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the run's stage records each training segment there")
    earlier = list(continues["segments"]) if continues else []
    offset = continues["steps"] if continues else 0
    segments = json.loads(path.read_text())
    refined = refined_from(segments[0]) if continues and segments else None
    if refined:  # the pieces were carried to another graft (train.refine) before the run: no steps, no samples
        earlier.append(refine_segment(offset, refined))
    for segment in segments:
        first, last = (step + offset for step in segment_steps(segment))
        earlier.append({**segment, "steps": f"{first}-{last}"})
    return earlier


def stepless_segment(step: int, command: str, **what) -> dict:
    """A segment of no steps and no samples at `step`: a `train.refine` or a `train.average` between runs."""
    return {"steps": f"{step}-{step}", "samples_seen": 0, "train_seconds": None, "command": command, **what}


def refine_segment(step: int, record: dict) -> dict:
    """The segment of a `train.refine` step, from its `refine.json`."""
    return stepless_segment(step, record["command"], refine={k: record[k] for k in ("from", "to")})


def refined_from(segment: dict) -> dict | None:
    """The `refine.json` of the folder a segment's command started from (`--init_adapter DIR`), if any."""
    import shlex

    words = shlex.split(segment.get("command") or "")
    folders = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--init_adapter"]
    folders += [word.split("=", 1)[1] for word in words if word.startswith("--init_adapter=")]
    return refined_record(Path(folders[-1])) if folders else None


CHECK_KEYS = ("eval_loss_own_audio", "eval_loss_zeroed_audio", "eval_loss_shuffled_audio", "eval_wer", "eval_cer")


def evaluations(log_history: list[dict], offset: int = 0) -> list[dict]:
    """The listening check and WER of each evaluation in a run's log history (steps + `offset`)."""
    return [{"step": e["step"] + offset, **{k: round(e[k], 4) for k in CHECK_KEYS if k in e}}
            for e in log_history if "eval_wer" in e]  # fmt: skip


def plot_continued(checks: list[dict], log_history: list[dict], offset: int, last: int, out_png: Path) -> Path:
    """The whole curve of continued pieces: every kept evaluation (listening check, WER) from step 0,
    with the training loss of the run that continued them (`offset` steps on; earlier runs' training
    losses are not kept)."""
    from train.plots import plot_training

    losses = [{"step": e["step"] + offset, "loss": e["loss"]} for e in log_history if "loss" in e]
    return plot_training(checks + losses, out_png, f"mini graft, steps 0-{last}: evaluations of every segment, "
                         f"training loss of steps {offset}-{last}")


def trained_on(run: Path) -> Path:
    """The base graft a run trained on: its adapter's `base_model_name_or_path` (the stage's
    `--model_path`) where that folder exists, else `build/mini-base`."""
    named = json.loads((run / "adapter_config.json").read_text()).get("base_model_name_or_path")
    return Path(named) if named and (Path(named) / "config.json").exists() else BASE


def cut_from(run: Path) -> tuple[Path, dict | None]:
    """For pieces `train.refine` wrote from a run or a mean of pieces (e.g. a run at a larger rank
    cut back to the kept one): the folder they came from, with the refine record; for any other
    `run` (a training run's output holds no `refine.json`), `run` itself."""
    record = refined_record(run)
    return (Path(record["adapter"]), record) if record else (run, None)


def is_kept(pieces: Path) -> bool:
    """The pieces in mini/trained, or pieces `train.refine` carried from them."""
    kept = (TRAINED / "stage2").resolve()
    return pieces.resolve() == kept or cut_from(pieces)[0].resolve() == kept


def refined_record(pieces: Path) -> dict | None:
    """The `refine.json` `train.refine` wrote beside `pieces`, if any."""
    from train.refine import REFINE_FILE

    path = pieces / REFINE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def averaged_run(run: Path, continues: bool) -> tuple[Path, dict | None]:
    """The training run whose segments and evaluations `keep` records for `run`: `run` itself, or,
    for the mean of the kept pieces (or pieces `train.refine` carried from them) and one run
    continuing them (`train.average`), that run, with the average's record."""
    from train.average import AVERAGE_FILE

    if not (run / AVERAGE_FILE).exists():
        return run, None
    record = json.loads((run / AVERAGE_FILE).read_text())
    others = [Path(a) for a in record["adapters"] if not is_kept(Path(a))]
    if not continues or len(record["adapters"]) != 2 or len(others) != 1:
        raise ValueError(f"{run} averages {record['adapters']}: keep records the mean of {TRAINED / 'stage2'} "
                         "(or pieces train.refine carried from them) and one run that continued them, with --continues")  # fmt: skip
    return others[0], record


def keep(run: Path = Path("build/mini-train/stage2"), note: str = "", continues: bool = False) -> dict:
    """Copy a jointly trained run's adapter (LoRA with the projector) into mini/trained, in bfloat16,
    with its loss plot and recipe.json: the base it trained on, each training segment (steps,
    samples seen, seconds, command), the listening check and WER of each evaluation, the hardware
    and versions. `continues`: the run started from the pieces in mini/trained (`--init_adapter
    mini/trained/stage2`, or pieces `train.refine` carried from them), whose segments come first.
    `run` may also be the mean of the kept pieces and such a run (`train.average`): that run's
    segments are recorded, then the average as a segment of no steps; and either of them cut to
    another rank by `train.refine` (recorded last, as a segment of no steps)."""
    import datetime
    import shutil

    from mini.sweep import last_state
    from train.stages import segment_steps

    earlier = json.loads((TRAINED / "recipe.json").read_text()) if continues else None
    source, cut = cut_from(run)
    trained, averaged = averaged_run(source, continues)
    segments = training_segments(trained, earlier)
    history = (last_state(trained) or {"log_history": []})["log_history"]  # the run's last checkpoint
    offset = earlier["steps"] if earlier else 0
    checks = (earlier.get("evaluations", []) if earlier else []) + evaluations(history, offset)
    last = segment_steps(segments[-1])[1]
    if averaged:
        segments.append(stepless_segment(last, averaged["command"], average=averaged["adapters"]))
    if cut:
        segments.append(refine_segment(last, cut))
    config = json.loads((trained_on(run) / "config.json").read_text())
    decoding = (TRAINED / DECODING).read_text() if (TRAINED / DECODING).exists() else None
    shutil.rmtree(TRAINED, ignore_errors=True)
    (TRAINED / "stage2").mkdir(parents=True)
    if decoding is not None:  # chosen by measurement on the graft, not by the run: kept across runs
        (TRAINED / DECODING).write_text(decoding)
    copy_as_bf16(run / "adapter_model.safetensors", TRAINED / "stage2" / "adapter_model.safetensors")
    shutil.copy(run / "adapter_config.json", TRAINED / "stage2" / "adapter_config.json")
    if earlier:
        plot_continued(checks, history, offset, last, TRAINED / "stage2" / "training.png")
    else:
        shutil.copy(run / "training.png", TRAINED / "stage2" / "training.png")
    recipe = {**{key: config[key] for key in RECIPE_KEYS}, "date": datetime.date.today().isoformat(),
              "segments": segments, "steps": last,
              "evaluations": checks,
              "hardware": next((s["hardware"] for s in reversed(segments) if s.get("hardware")), None), "note": note}  # fmt: skip
    (TRAINED / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    total = sum(p.stat().st_size for p in TRAINED.rglob("*") if p.is_file())
    print(f"kept the trained pieces in {TRAINED}: {total / 2**20:.1f} MiB")
    if total > 16 * 2**20:
        raise ValueError(f"the trained pieces take {total / 2**20:.1f} MiB; at most 16 MiB go in git")
    return recipe


def training_voices(out: Path, manifest: Path = DEVTEST, source_voice: str = "flite-slt",
                    voices=("flite-awb", "flite-rms"), max_texts: int | None = None) -> Path:
    """The texts `source_voice` reads in `manifest` (the first `max_texts` of them, or all) spoken
    by training `voices` (plain: no tempo, pitch, reverb or noise), made by the corpus's own job
    runner into `out/devtest.jsonl`: does the graft's error follow the voice or the text? With the
    training manifest, the same for texts the graft trained on (docs/mini-graft.md, "Held-out voice
    or unseen text")."""
    from mini.corpus.jobs import ClipJob, generate
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
    parser.add_argument("step", choices=("assemble", "score", "keep", "compare", "voices"))
    parser.add_argument("--out", type=Path, default=VOICES_OUT, help="with voices: where to write")
    parser.add_argument("--manifest", type=Path, default=DEVTEST, help="with voices: whose texts to read")
    parser.add_argument("--source_voice", default="flite-slt", help="with voices: the manifest voice whose texts are read")
    parser.add_argument("--max_texts", type=int, default=None, help="with voices: read only the first N texts")
    parser.add_argument("--note", default="", help="with keep: anything else to record about the run")
    parser.add_argument("--continues", action="store_true",
                        help="with keep: the run started from mini/trained/stage2 (--init_adapter), or from pieces train.refine "
                        "carried from it; its segments follow")
    parser.add_argument("--predictions", type=Path, help="with compare: a train.evaluate predictions.jsonl")
    parser.add_argument("--run", type=Path, default=Path("build/mini-train/stage2"), help="with keep: the run to keep")
    args = parser.parse_args(argv)
    if args.step == "compare":
        compare(args.predictions)
    elif args.step == "voices":
        written = training_voices(args.out, args.manifest, args.source_voice, max_texts=args.max_texts)
        scored = "eval-trainvoices" if args.out == VOICES_OUT else f"eval-{args.out.name}"
        print(f"wrote {written}; score it with python -m train.evaluate --model {GRAFT} --data {written} "
              f"--max_new_tokens 64 --output build/mini-train/{scored}")  # fmt: skip
    elif args.step == "keep":
        keep(args.run, args.note, args.continues)
    else:
        assemble() if args.step == "assemble" else score()


if __name__ == "__main__":
    main()

"""Long recordings for scoring long-form transcription: sentences with pauses, the boundaries written down.

    python -m mini.longform make --out build/longform                 # dev-test and validation recordings
    python -m mini.longform score --model build/mini-graft --data build/longform/devtest.jsonl
    python -m mini.longform score --model build/mini-graft --data build/longform/validation.jsonl \
        --max_segment_seconds 10 20 30                                 # choosing the default, on validation
    python -m mini.longform noise --model build/mini-graft --data build/longform/validation.jsonl \
        --speech_detector energy                                       # noise, tones, silence; noisy speech

`make` reads held-out sentences with held-out voices only (never a training voice): for dev-test,
flite slt, festival's slt HTS and the pocketsphinx recordings; for validation, RHVoice bdl, pico
en-GB and the held-out Asterisk prompts. Each clip is trimmed to its first and last sound and the
clips are joined with pauses drawn from 0.2 to 1.5 s, one join in five back to back (no pause).
Each recording's manifest row holds its file, duration, text and `sentences`: `[{"start", "end",
"text", "voice", "pause_before"}]`. The dev-test set's first recording is about 2 minutes (the one
`make demo` scores); the others are 2-4 minutes.

`score` transcribes every recording three ways: in segments (the pipeline's default), as one
whole-recording prompt (`segment_audio=False`) and, with `--whisper`, Whisper base's own sequential
long-form decoding; beside them each sentence alone, as a clip. It reports WER, the
timestamp error (each sentence start that follows a pause against the nearest chunk start:
median and 90th percentile) and the real-time factor of the segmented path at each batch size.
`--speech_detector` picks what finds the speech (Silero VAD, or the frame-energy rule).

`noise` counts the words written for 10 s of silence, white and pink noise and music-like tones (none
is right), and scores the first recording (`--limit`) under white noise at 10 dB SNR, in segments.
"""

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import soundfile

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE as RATE
from qwen2_audio_graft.pipeline_qwen2_audio_graft import decoding_beams, load_audio
PAUSE_RANGE = (0.2, 1.5)
BACK_TO_BACK_SHARE = 0.2
TRIM_DBFS = -45.0
SETS = {
    "devtest": [("flite-slt", 120.0), ("festival-cmu_us_slt_arctic_hts", 180.0), ("real+flite-slt", 150.0)],
    "validation": [("rhvoice-bdl", 150.0), ("pico-en-GB", 150.0), ("allison", 150.0)],
}


def trim(samples: np.ndarray) -> np.ndarray:
    """The clip from its first to its last sample louder than TRIM_DBFS."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (TRIM_DBFS / 20))
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]


def join(clips: list[dict], seed: int) -> tuple[np.ndarray, list[dict]]:
    """Clips ({"samples", "text", "voice"}) joined with drawn pauses; the sentences with their times."""
    rng = random.Random(seed)
    pieces, sentences, at = [], [], 0.0
    for index, clip in enumerate(clips):
        pause = 0.5 if index == 0 else (0.0 if rng.random() < BACK_TO_BACK_SHARE else round(rng.uniform(*PAUSE_RANGE), 2))
        speech = trim(clip["samples"])
        pieces += [np.zeros(int(round(pause * RATE)), dtype=np.float32), speech]
        start = at + pause
        at = start + len(speech) / RATE
        sentences.append({"start": round(start, 3), "end": round(at, 3), "text": clip["text"], "voice": clip["voice"],
                          "pause_before": pause})  # fmt: skip
    pieces.append(np.zeros(RATE // 2, dtype=np.float32))
    return np.concatenate(pieces), sentences


def held_out_clips(split: str, corpus_seed: int, out: Path) -> dict[str, list[dict]]:
    """Clean clips of every held-out voice of `split`, made by the corpus's own job runner: sentences of the
    split's pool the split's clips do not use, and the split's real recordings."""
    from mini.corpus.allison import load_prompts, split_prompts
    from mini.corpus.clip import ClipJob
    from mini.corpus.jobs import generate, plan_real
    from mini.corpus.text import load_sentences, split_pools
    from mini.corpus.voices import EVAL_TTS_VOICES, VALIDATION_TTS_VOICES

    _, validation_pool, devtest_pool = split_pools(load_sentences(), corpus_seed)
    voices, pool = (EVAL_TTS_VOICES, devtest_pool) if split == "devtest" else (VALIDATION_TTS_VOICES, validation_pool)
    rng = random.Random(f"{corpus_seed}:longform-{split}")
    unused = pool[100:]  # the split's clips read the pool's first sentences (40 a voice)
    rng.shuffle(unused)
    jobs = [ClipJob(split, i, voice, text) for k, voice in enumerate(sorted(voices))
            for i, text in enumerate(unused[k::len(voices)][:120])]  # fmt: skip
    if split == "devtest":
        jobs += plan_real()
    else:
        jobs += [ClipJob(split, i, "allison", text, source="real", src_path=str(path))
                 for i, (path, text) in enumerate(split_prompts(load_prompts(), corpus_seed)[1])]  # fmt: skip
    result = generate(jobs, out / "clips", progress=False)
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} clips failed, the first: {result.failures[0]}")
    by_voice: dict[str, list[dict]] = {}
    for record in result.records:
        samples = load_audio(out / "clips" / record["audio"])
        by_voice.setdefault(record["voice"], []).append({"samples": samples, "text": record["text"], "voice": record["voice"]})
    return by_voice


def pick(by_voice: dict[str, list[dict]], spec: str, seconds: float) -> list[dict]:
    """Clips for one recording: `spec` names a voice, or "real+VOICE" (every real recording, then VOICE's
    clips), until `seconds` of speech are reached."""
    from mini.corpus.voices import REAL_VOICES

    real, _, voice = spec.rpartition("+")
    clips = [c for v in REAL_VOICES for c in by_voice.get(v, [])] if real else []
    clips += by_voice[voice]
    chosen, total = [], 0.0
    for clip in clips:
        if total >= seconds:
            break
        chosen.append(clip)
        total += len(trim(clip["samples"])) / RATE + 0.85
    return chosen


def make(out: Path, corpus_seed: int = 0, splits=tuple(SETS)) -> dict[str, Path]:
    """Write the recordings and one manifest a split (`out/devtest.jsonl`, `out/validation.jsonl`)."""
    written = {}
    for split in splits:
        recordings = SETS[split]
        by_voice = held_out_clips(split, corpus_seed, out)
        rows = []
        for index, (spec, seconds) in enumerate(recordings):
            samples, sentences = join(pick(by_voice, spec, seconds), seed=index)
            name = f"{split}/{split}-{index}-{spec}.wav"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(out / name, samples, RATE, subtype="PCM_16")
            rows.append({"audio": name, "duration": round(len(samples) / RATE, 2), "voices": spec,
                         "text": " ".join(s["text"] for s in sentences), "sentences": sentences})  # fmt: skip
        manifest = out / f"{split}.jsonl"
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
        written[split] = manifest
        print(f"{manifest}: " + ", ".join(f"{r['voices']} {r['duration']:.0f} s ({len(r['sentences'])} sentences)"
                                          for r in rows))  # fmt: skip
    return written


def timestamp_errors(sentences: list[dict], chunks: list[dict], min_pause: float = 0.3) -> list[float]:
    """For each sentence start after a pause of `min_pause` or more: its distance to the nearest chunk start."""
    starts = np.array([c["timestamp"][0] for c in chunks]) if chunks else np.array([np.inf])
    return [float(np.min(np.abs(starts - s["start"]))) for s in sentences if s["pause_before"] >= min_pause]


def load(manifest: Path, limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:limit]
    for row in rows:
        row["samples"] = load_audio(manifest.parent / row["audio"])
    return rows


def score_segmented(asr, rows, max_segment_seconds: float, batch_size: int) -> dict:
    from train.evaluation.metrics import compute_metrics

    started = time.time()
    outs = asr([r["samples"] for r in rows], return_timestamps=True, batch_size=batch_size,
               max_segment_seconds=max_segment_seconds)  # fmt: skip
    seconds = time.time() - started
    errors = [e for r, o in zip(rows, outs) for e in timestamp_errors(r["sentences"], o["chunks"])]
    return {"wer": compute_metrics([r["text"] for r in rows], [o["text"] for o in outs])["wer"],
            "per_recording": [compute_metrics([r["text"]], [o["text"]])["wer"] for r, o in zip(rows, outs)],
            "timestamp_error_median": float(np.median(errors)), "timestamp_error_p90": float(np.percentile(errors, 90)),
            "starts_after_a_pause": len(errors), "rtf": seconds / sum(len(r["samples"]) / RATE for r in rows),
            "seconds": round(seconds, 1), "hypotheses": [o["text"] for o in outs]}  # fmt: skip


def load_whisper(model: str, num_beams: int):
    """(model, processor) of a Whisper checkpoint set to transcribe English with `num_beams`, in its
    generation config rather than beside it at each call."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    whisper = WhisperForConditionalGeneration.from_pretrained(model).eval()
    config = whisper.generation_config
    # `update` sets only GenerationConfig's own fields and hands back the rest: language and task are
    # Whisper's, and left to it they made every `generate` detect the language first, a second encoder
    # pass over the batch (Whisper's own `generate(language=...)` sets them as attributes, as here).
    config.language, config.task = "en", "transcribe"
    config.update(num_beams=num_beams, do_sample=False)
    return whisper, WhisperProcessor.from_pretrained(model)


def whisper_long_form(num_beams: int, model: str = "build/components/whisper-base"):
    """Whisper base's own long-form transcription: a function from recordings to texts.

    Whisper's sequential long-form decoding (the whole recording to `generate` with timestamps, each
    window resumed where the last segment ended), English, `num_beams`. The stock pipeline's chunked
    alternative (`chunk_length_s=30`) dropped whole sentences here: 167 of 334 words of the first
    dev-test recording, 55.7% WER greedy, where the sequential decoding gives 8.3%."""
    whisper, processor = load_whisper(model, num_beams)

    def transcribe(recordings: list[np.ndarray]) -> list[str]:
        texts = []
        for recording in recordings:
            inputs = processor(recording, sampling_rate=RATE, return_tensors="pt", truncation=False, padding="longest",
                               return_attention_mask=True)  # fmt: skip
            with torch.no_grad():
                ids = whisper.generate(inputs.input_features, attention_mask=inputs.attention_mask, return_timestamps=True)
            texts.append(processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        return texts

    return transcribe


def score(model: str, manifest: Path, segment_seconds: list[float], batch_sizes: list[int], whole: bool, clips: bool,
          whisper: bool, limit: int | None = None, speech_detector: str = "auto") -> dict:  # fmt: skip
    from transformers import pipeline

    from train.evaluation.metrics import compute_metrics

    rows = load(manifest, limit)
    asr = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, speech_detector=speech_detector)
    results = {"manifest": str(manifest), "recordings": len(rows), "minutes": round(sum(r["duration"] for r in rows) / 60, 1),
               "num_beams": decoding_beams(asr.model.generation_config),
               "speech_detector": asr.resolve_speech_detector(speech_detector), "segmented": {}}  # fmt: skip
    for seconds in segment_seconds:
        for batch_size in batch_sizes:
            key = f"max {seconds:g} s, batch {batch_size}"
            results["segmented"][key] = score_segmented(asr, rows, seconds, batch_size)
            print(f"segmented, {key}: " + json.dumps({k: v for k, v in results["segmented"][key].items() if k != "hypotheses"}))
    refs = [r["text"] for r in rows]
    if whole:
        longest = max(len(r["samples"]) for r in rows) / RATE
        asr.processor.max_audio_seconds = max(asr.processor.max_audio_seconds, longest)  # the whole of every recording
        # a recording in one prompt can loop until the token limit: at most 6 tokens a second of audio,
        # about twice what speech needs
        hyps = [asr(r["samples"], segment_audio=False, max_new_tokens=int(6 * r["duration"]))["text"] for r in rows]
        results["whole_prompt"] = {"wer": compute_metrics(refs, hyps)["wer"], "hypotheses": hyps}
        print(f"whole-recording prompt: WER {results['whole_prompt']['wer']:.1%}")
    if clips:
        sentences = [s for r in rows for s in r["sentences"]]
        audio = [r["samples"][int(s["start"] * RATE) : int(s["end"] * RATE)] for r in rows for s in r["sentences"]]
        hyps = [o["text"] for o in asr(audio, batch_size=8, segment_audio=False)]
        results["sentence_clips"] = {"wer": compute_metrics([s["text"] for s in sentences], hyps)["wer"], "clips": len(hyps)}
        print(f"each sentence alone: WER {results['sentence_clips']['wer']:.1%}")
    if whisper:
        hyps = whisper_long_form(results["num_beams"])([r["samples"] for r in rows])
        results["whisper_base"] = {"wer": compute_metrics(refs, hyps)["wer"], "hypotheses": hyps}
        print(f"Whisper base, sequential long-form: WER {results['whisper_base']['wer']:.1%}")
    return results


def non_speech(seconds: float = 10.0, level: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Sounds that hold no speech, `seconds` long at RMS `level`: silence, white and pink noise, and music-like
    tones (a melody of eight notes, three harmonics each, struck and fading)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 1.0)), n)  # power falls as 1/f
    t = np.arange(n // 8) / RATE
    notes = [sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3)) * np.exp(-3 * t)
             for f in (262, 294, 330, 349, 392, 440, 494, 523)]  # fmt: skip
    sounds = {"white noise": rng.standard_normal(n), "pink noise": pink, "tones": np.concatenate(notes)}
    sounds = {k: (v * level / np.sqrt(np.mean(np.square(v)))).astype(np.float32) for k, v in sounds.items()}
    return {"silence": np.zeros(n, dtype=np.float32), **sounds}


def noise_check(model: str, manifest: Path, speech_detector: str, snr_db: float = 10.0, limit: int = 1) -> dict:
    """Words the graft writes for `non_speech` sounds (none is right), and WER and timestamp errors of the
    first `limit` recordings of `manifest` under white noise at `snr_db` (against the level of their speech)."""
    from transformers import pipeline

    from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_SEGMENT_SECONDS

    asr = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, speech_detector=speech_detector)
    results = {"speech_detector": asr.resolve_speech_detector(speech_detector), "non_speech": {}}
    for name, sound in non_speech().items():
        text = asr(sound, return_timestamps=True)["text"]
        results["non_speech"][name] = {"words": len(text.split()), "text": text}
        print(f"{name}: {len(text.split())} words {text[:80]!r}")
    rows, rng = load(manifest, limit), np.random.default_rng(1)
    for row in rows:
        speech = np.concatenate([row["samples"][int(s["start"] * RATE) : int(s["end"] * RATE)] for s in row["sentences"]])
        level = np.sqrt(np.mean(np.square(speech))) / 10 ** (snr_db / 20)
        row["samples"] = (row["samples"] + level * rng.standard_normal(len(row["samples"]))).astype(np.float32)
    noisy = score_segmented(asr, rows, DEFAULT_SEGMENT_SECONDS, 8)
    results[f"speech at {snr_db:g} dB SNR"] = noisy
    print(f"speech at {snr_db:g} dB SNR: " + json.dumps({k: v for k, v in noisy.items() if k != "hypotheses"}))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("make", "score", "noise"))
    parser.add_argument("--out", type=Path, default=Path("build/longform"), help="make: where to write")
    parser.add_argument("--seed", type=int, default=0, help="make: the corpus seed (its sentence pools)")
    parser.add_argument("--splits", nargs="+", choices=tuple(SETS), default=list(SETS), help="make: which sets")
    parser.add_argument("--model", default="build/mini-graft", help="score: the graft folder")
    parser.add_argument("--data", type=Path, default=Path("build/longform/devtest.jsonl"), help="score: a manifest")
    parser.add_argument("--limit", type=int, help="score: only the first N recordings")
    parser.add_argument("--max_segment_seconds", type=float, nargs="+", default=[10.0])
    parser.add_argument("--batch_size", type=int, nargs="+", default=[8])
    parser.add_argument("--no_whole", action="store_true", help="score: leave out the whole-recording prompt")
    parser.add_argument("--no_clips", action="store_true", help="score: leave out the sentences one by one")
    parser.add_argument("--whisper", action="store_true", help="score: Whisper base's own long-form decoding beside")
    parser.add_argument("--speech_detector", default="auto", choices=("auto", "silero", "energy"),
                        help="score, noise: what finds speech (auto: Silero VAD where installed)")
    parser.add_argument("--results", type=Path, help="score, noise: write the figures here (JSON)")
    args = parser.parse_args(argv)
    if args.step == "make":
        return make(args.out, args.seed, args.splits)
    if args.step == "noise":
        results = noise_check(args.model, args.data, args.speech_detector, limit=args.limit or 1)
    else:
        results = score(args.model, args.data, args.max_segment_seconds, args.batch_size, not args.no_whole,
                        not args.no_clips, args.whisper, args.limit, args.speech_detector)  # fmt: skip
    if args.results:
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

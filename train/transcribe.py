"""Transcribe audio and video files and folders with the graft: text, subtitles and timestamps.

    python -m train.transcribe build/mini-graft talk.wav lectures/ --output_dir out --formats txt srt vtt json
    qwen2-audio-graft-transcribe you/qwen2-vl-7b-audio meeting.m4a interview.mp4 --device cuda --dtype bfloat16

Every recording goes through the model's own `pipeline("automatic-speech-recognition")` with
`return_timestamps=True`: files are decoded by FFmpeg (PyAV: WAV, FLAC, MP3, OGG/Opus, M4A/AAC,
WMA, the sound of MP4/MKV/WebM video), speech is found by Silero VAD (`--speech_detector`), cut at
pauses into segments of at most `--max_segment_seconds` and batched `--batch_size` segments at a
time across recordings. For each input `NAME.ext` it writes `NAME.txt` (the text), `NAME.srt` and
`NAME.vtt` (one cue a segment) and `NAME.json` (`{"text", "chunks": [{"text", "timestamp": [start,
end]}], "speech_detector"}`) into `--output_dir` as soon as that file is done, the formats and file
names Whisper's command line writes. A folder is searched for audio and video files (recursively).
A file that cannot be read is one line, `PATH: reason`, and the others go on; the run ends with
`N written, M failed, K skipped` and exits 1 when any file failed. Files whose outputs all exist
already are skipped (a cut-off run continues where it stopped) unless `--overwrite` is given.
"""

import argparse
import collections
import json
import os
import sys
from pathlib import Path

# What a folder is searched for: the audio and video files FFmpeg reads (a file named on the command line is
# read whatever its name).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif",
                  ".amr", ".mka", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".3gp")  # fmt: skip
FORMATS = ("txt", "srt", "vtt", "json")


def timestamp(seconds: float, decimal: str) -> str:
    """`HH:MM:SS,mmm` (SRT, `decimal=","`) or `HH:MM:SS.mmm` (WebVTT)."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{decimal}{millis % 1000:03d}"


def to_srt(chunks: list[dict]) -> str:
    cues = [f"{index}\n{timestamp(c['timestamp'][0], ',')} --> {timestamp(c['timestamp'][1], ',')}\n{c['text']}\n"
            for index, c in enumerate(chunks, start=1)]  # fmt: skip
    return "\n".join(cues)


def to_vtt(chunks: list[dict]) -> str:
    cues = [f"{timestamp(c['timestamp'][0], '.')} --> {timestamp(c['timestamp'][1], '.')}\n{c['text']}\n" for c in chunks]
    return "WEBVTT\n\n" + "\n".join(cues)


def output_paths(stem: Path, formats=FORMATS) -> list[Path]:
    return [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]


def write_outputs(result: dict, stem: Path, formats=FORMATS, speech_detector: str | None = None) -> list[Path]:
    """Write one recording's result (`{"text", "chunks"}`) as `stem.<format>` for each format; the JSON also
    names the `speech_detector` that found the speech. Each file appears whole or not at all."""
    writers = {"txt": lambda: result["text"] + "\n", "srt": lambda: to_srt(result["chunks"]),
               "vtt": lambda: to_vtt(result["chunks"]),
               "json": lambda: json.dumps({"text": result["text"], "chunks": [
                   {"text": c["text"], "timestamp": list(c["timestamp"])} for c in result["chunks"]],
                   "speech_detector": speech_detector}, ensure_ascii=False, indent=2) + "\n"}  # fmt: skip
    paths = output_paths(stem, formats)
    for fmt, path in zip(formats, paths):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(writers[fmt](), encoding="utf-8")
        os.replace(partial, path)  # a run cut off mid-write leaves no output that looks done
    return paths


def find_audio(inputs: list[str]) -> list[Path]:
    """The audio files named, and those under the folders named; a missing path is an error naming it."""
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"No audio files ({', '.join(AUDIO_SUFFIXES)}) under {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No audio file or folder at {path}")
    stems = {}
    for path in files:
        if path.stem in stems:
            raise FileNotFoundError(f"{stems[path.stem]} and {path} would write the same {path.stem}.* outputs: "
                                    "transcribe them into different --output_dir folders")  # fmt: skip
        stems[path.stem] = path
    return files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="qwen2-audio-graft-transcribe", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("model", help="a graft folder or Hub repo id")
    parser.add_argument("inputs", nargs="+", help="audio files and folders")
    parser.add_argument("--output_dir", type=Path, default=Path("."))
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--batch_size", type=int, default=8, help="segments transcribed together (default 8)")
    parser.add_argument("--max_segment_seconds", type=float, help="longest segment (default: the pipeline's, 10; at most 30)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--max_new_tokens", type=int, default=256, help="most tokens written for one segment")
    parser.add_argument("--speech_detector", default="auto", choices=("auto", "silero", "energy"),
                        help="what finds speech: Silero VAD, the frame-energy rule, or auto (Silero where installed)")
    parser.add_argument("--overwrite", action="store_true", help="transcribe files whose outputs exist already")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    return args


def readable(files: list[Path], failed: list[Path], order: collections.deque, progress):
    """16 kHz samples of each file that decodes, its path appended to `order`; one line `PATH: reason` for
    each that does not, its path appended to `failed`."""
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    for path in files:
        try:
            samples = load_audio(path)
        except (OSError, ValueError) as error:  # the reader's errors are one line naming the file
            failed.append(path)
            progress.write(str(error) if str(error).startswith(str(path)) else f"{path}: {error}", file=sys.stderr)
            progress.update()
            continue
        order.append(path)
        yield samples


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tqdm.auto import tqdm
    from transformers import pipeline

    try:
        files = find_audio(args.inputs)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    todo = [f for f in files if args.overwrite or not all(p.exists() for p in output_paths(args.output_dir / f.stem, args.formats))]
    skipped = len(files) - len(todo)
    print(f"{len(files)} recording(s) to {args.output_dir}: {', '.join(args.formats)}"
          + (f"; {skipped} done already, skipped (--overwrite redoes them)" if skipped else ""), file=sys.stderr)  # fmt: skip
    asr = pipeline("automatic-speech-recognition", model=args.model, trust_remote_code=True, device=args.device,
                   dtype=getattr(torch, args.dtype))  # fmt: skip
    detector = asr.resolve_speech_detector(args.speech_detector)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    segments = {} if args.max_segment_seconds is None else {"max_segment_seconds": args.max_segment_seconds}
    failed, order, written = [], collections.deque(), 0
    with tqdm(total=len(todo), unit="file", disable=args.no_progress) as progress:
        results = asr(readable(todo, failed, order, progress), batch_size=args.batch_size, return_timestamps=True,
                      max_new_tokens=args.max_new_tokens, speech_detector=detector, **segments)  # fmt: skip
        for result in results:  # in the order the files were decoded; each written as soon as it is done
            path = order.popleft()
            outputs = write_outputs(result, args.output_dir / path.stem, args.formats, detector)
            written += 1
            progress.write(f"{path}: {len(result['chunks'])} chunks -> {', '.join(p.name for p in outputs)}")
            progress.update()
    print(f"{written} written, {len(failed)} failed, {skipped} skipped", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Transcribe audio files and folders with the graft: text, subtitles and timestamps.

    python -m train.transcribe build/mini-graft talk.wav lectures/ --output_dir out --formats txt srt vtt json
    qwen2-audio-graft-transcribe you/qwen2-vl-7b-audio meeting.flac --device cuda --dtype bfloat16

Every recording goes through the model's own `pipeline("automatic-speech-recognition")` with
`return_timestamps=True`: cut at pauses into segments of at most `--max_segment_seconds`, batched
`--batch_size` segments at a time across recordings. For each input `NAME.ext` it writes
`NAME.txt` (the text), `NAME.srt` and `NAME.vtt` (one cue a segment) and `NAME.json`
(`{"text", "chunks": [{"text", "timestamp": [start, end]}]}`) into `--output_dir`, the formats and
file names Whisper's command line writes. A folder is searched for audio files (recursively).
"""

import argparse
import json
import sys
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aiff", ".aif")
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


def write_outputs(result: dict, stem: Path, formats=FORMATS) -> list[Path]:
    """Write one recording's result (`{"text", "chunks"}`) as `stem.<format>` for each format."""
    writers = {"txt": lambda: result["text"] + "\n", "srt": lambda: to_srt(result["chunks"]),
               "vtt": lambda: to_vtt(result["chunks"]),
               "json": lambda: json.dumps({"text": result["text"], "chunks": [
                   {"text": c["text"], "timestamp": list(c["timestamp"])} for c in result["chunks"]]},
                   ensure_ascii=False, indent=2) + "\n"}  # fmt: skip
    written = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        path.write_text(writers[fmt](), encoding="utf-8")
        written.append(path)
    return written


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
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    return args


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
    print(f"{len(files)} recording(s) to {args.output_dir}: {', '.join(args.formats)}", file=sys.stderr)
    asr = pipeline("automatic-speech-recognition", model=args.model, trust_remote_code=True, device=args.device,
                   dtype=getattr(torch, args.dtype))  # fmt: skip
    args.output_dir.mkdir(parents=True, exist_ok=True)
    segments = {} if args.max_segment_seconds is None else {"max_segment_seconds": args.max_segment_seconds}
    results = asr((str(f) for f in files), batch_size=args.batch_size, return_timestamps=True,
                  max_new_tokens=args.max_new_tokens, **segments)  # fmt: skip
    for path, result in tqdm(zip(files, results), total=len(files), unit="file", disable=args.no_progress):
        written = write_outputs(result, args.output_dir / path.stem, args.formats)
        tqdm.write(f"{path}: {len(result['chunks'])} chunks -> {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Model card (the repo's README.md) for the Whisper-encoder + Qwen2-VL speech recogniser.

Run:

    .venv/bin/python -m train.card --results results.json --repo_id ORG/NAME \
        --base_model openai/whisper-base --base_model Qwen/Qwen2-VL-2B-Instruct \
        --output out/model/README.md --widget_audio clip1.wav clip2.wav

`results.json` holds one result or a list of them, each
{"dataset_name", "dataset_type", "split", "wer", "cer", "num_clips"} with WER and CER as
fractions (what `train.evaluation.metrics.compute_metrics` returns). The card shows them, and the
model-index stores them, in percent, the unit the Hub's ASR cards and leaderboards use.
Widget audio is copied into `samples/` beside the README so the Hub widget finds it.
"""

import argparse
import json
import shutil
from pathlib import Path, PurePosixPath

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# the instruction the repo's ASR pipeline sends by default
from qwen2_audio_graft.pipeline_qwen2_audio_graft import DEFAULT_INSTRUCTION

RESULT_KEYS = ("dataset_name", "dataset_type", "split", "wer", "cer", "num_clips")
TAGS = ["audio", "speech-recognition", "whisper", "qwen2_vl", "custom_code"]


def _result_list(results: dict | list[dict]) -> list[dict]:
    results = [results] if isinstance(results, dict) else results
    if not isinstance(results, list) or not results:
        raise TypeError(f"results must be a dict or a non-empty list of dicts, got {results!r}")
    for index, result in enumerate(results):
        missing = [key for key in RESULT_KEYS if key not in result]
        if missing:
            raise ValueError(f"result {index} lacks keys {missing}; expected {list(RESULT_KEYS)}")
    return results


def _percent(fraction: float) -> float:
    return round(100 * float(fraction), 2)


def _eval_results(results: list[dict]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="automatic-speech-recognition",
            task_name="Speech Recognition",
            dataset_type=result["dataset_type"],
            dataset_name=result["dataset_name"],
            dataset_split=result["split"],
            metric_type=metric,
            metric_name=f"{metric.upper()} (%)",
            metric_value=_percent(result[metric]),
        )
        for result in results
        for metric in ("wer", "cer")
    ]


def _widget(widget_audio: tuple[str, ...]) -> list[dict] | None:
    entries = []
    for src in widget_audio:
        path = PurePosixPath(src)
        # The Hub widget resolves src inside the repo, so it must be a relative in-repo path.
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"widget audio must be a relative path inside the repo, got {src!r}")
        entries.append({"src": str(path), "example_title": path.stem})
    return entries or None


def _audio_lines(repo_id: str, sample: str | None) -> tuple[str, str]:
    """The import and the assignment that give the snippets an `audio_path`."""
    if sample is None:
        return "", 'audio_path = "speech.wav"  # any recording; it is resampled to 16 kHz\n'
    return ("from huggingface_hub import hf_hub_download\n",
            f'audio_path = hf_hub_download("{repo_id}", "{sample}")  # a sample shipped with the model\n')


def _usage(repo_id: str, instruction: str, sample: str | None) -> str:
    audio_import, audio_assignment = _audio_lines(repo_id, sample)
    return f"""## Usage

```python
{audio_import}from transformers import pipeline

{audio_assignment}asr = pipeline("automatic-speech-recognition", model="{repo_id}", trust_remote_code=True)
print(asr(audio_path)["text"])
```

The pipeline reads every audio and video file FFmpeg reads (through PyAV: no ffmpeg binary needed),
finds the speech with Silero VAD, and also takes arrays or `{{"raw": array, "sampling_rate": sr}}`
dicts. The model classes directly, continuing from
`audio_path` above:

```python
from transformers import AutoModel, AutoProcessor
from transformers.audio_utils import load_audio

processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)

sampling_rate = processor.feature_extractor.sampling_rate  # 16 kHz
audio = load_audio(audio_path, sampling_rate=sampling_rate)
# The chat template writes the audio item as <|audio_bos|><|AUDIO|><|audio_eos|>; the processor
# expands <|AUDIO|> to one placeholder per audio frame.
messages = [{{"role": "user", "content": [{{"type": "audio"}}, {{"type": "text", "text": "{instruction}"}}]}}]
prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
inputs = processor(text=prompt, audio=audio, sampling_rate=sampling_rate, return_tensors="pt")
generated = model.generate(**inputs, max_new_tokens=128)
# generate returns the prompt followed by the new tokens; keep only the new ones.
new_tokens = generated[:, inputs["input_ids"].shape[1]:]
print(processor.batch_decode(new_tokens, skip_special_tokens=True)[0])
```
"""


def _results_table(results: list[dict]) -> str:
    rows = [
        f"| {r['dataset_name']} | {r['split']} | {r['num_clips']} "
        f"| {_percent(r['wer']):.2f} | {_percent(r['cer']):.2f} |"
        for r in results
    ]
    header = "| Test set | Split | Clips | WER (%) | CER (%) |\n|---|---|---:|---:|---:|"
    note = ("Transcripts and references pass through Whisper's English text normaliser, with its "
            "British-to-American spelling map, before scoring; WER and CER are corpus-level.")
    return "## Results\n\n" + header + "\n" + "\n".join(rows) + "\n\n" + note + "\n"


def _body(repo_id: str, base_models: list[str], results: list[dict], instruction: str, sample: str | None) -> str:
    bases = ", ".join(f"[{name}](https://huggingface.co/{name})" for name in base_models)
    intro = f"""# {repo_id.split("/")[-1]}

Speech recognition by a language model that listens: 16 kHz audio becomes log-mel features, a
Whisper encoder turns them into audio frames, a projector maps the frames into the embedding space
of a Qwen2-VL language model, and the language model writes the transcript after the prompt.

audio -> Whisper encoder -> projector -> Qwen2-VL LLM -> text

Built from: {bases}. The modelling code lives in this repo, so loading needs
`trust_remote_code=True`.
"""
    return intro + "\n" + _usage(repo_id, instruction, sample) + "\n" + _results_table(results)


def build_model_card(results: dict | list[dict], *, repo_id: str, base_models: list[str], datasets: list[str],
                     license: str = "apache-2.0", widget_audio: tuple[str, ...] = (), language: str = "en",
                     instruction: str = DEFAULT_INSTRUCTION) -> ModelCard:
    """Card with Hub metadata (model-index from `results`, widget from `widget_audio`) and a usage body."""
    results = _result_list(results)
    if not base_models:
        raise ValueError("expected at least one base model id, got none")
    data = ModelCardData(
        base_model=list(base_models),
        datasets=list(datasets or []) or None,
        eval_results=_eval_results(results),
        language=language,
        library_name="transformers",
        license=license,
        metrics=["wer", "cer"],
        model_name=repo_id.split("/")[-1],
        pipeline_tag="automatic-speech-recognition",
        tags=TAGS,
        widget=_widget(tuple(widget_audio)),
    )
    sample = widget_audio[0] if widget_audio else None
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(repo_id, base_models, results, instruction, sample)}")


def copy_widget_audio(audio_paths: list[str], model_dir: Path) -> list[str]:
    """Copy audio into `model_dir/samples/` and return the in-repo names the widget uses."""
    names = [Path(path).name for path in audio_paths]
    if len(set(names)) != len(names):
        raise ValueError(f"widget audio file names must be unique inside samples/, got {names}")
    (model_dir / "samples").mkdir(parents=True, exist_ok=True)
    for path, name in zip(audio_paths, names):
        if not Path(path).is_file():
            raise ValueError(f"widget audio {path} does not exist")
        shutil.copyfile(path, model_dir / "samples" / name)
    return [f"samples/{name}" for name in names]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="JSON file: one result dict or a list of them")
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--output", required=True, help="README.md path inside the model folder")
    parser.add_argument("--base_model", action="append", required=True, help="repeat for each base model")
    parser.add_argument("--dataset", action="append", default=[], help="training dataset id; repeatable")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--language", default="en")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="text after the audio in the usage snippet")
    parser.add_argument("--widget_audio", nargs="+", action="extend", default=[],
                        help="audio files to copy into samples/")
    args = parser.parse_args(argv)

    output = Path(args.output)
    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    widget = copy_widget_audio(args.widget_audio, output.parent)
    card = build_model_card(results, repo_id=args.repo_id, base_models=args.base_model, datasets=args.dataset,
                            license=args.license, widget_audio=tuple(widget), language=args.language,
                            instruction=args.instruction)
    card.save(output)
    print(f"wrote {output} ({len(widget)} widget samples)")


if __name__ == "__main__":
    main()

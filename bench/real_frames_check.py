"""Does encoding only the real mel frames lose what the speech says? Ask Whisper base's own decoder.

    python -m bench.real_frames_check [--data build/demo-corpus/devtest.jsonl] [--out build/real-frames-check.json]

For every dev-test clip, Whisper base (`build/components/whisper-base`) transcribes it greedily
twice with its own decoder: from the encoder states of the whole 30 s window (what Whisper was
trained on, `encode_padding=True`) and from `encode_real_frames` (the graft's
`encode_padding=False`: the encoder's layers over the clip's real frames only, and the decoder's
cross-attention over those frames alone). Prints WER per source for both and writes them to
`--out`. No training is involved: this measures what the states hold before any projector sees
them, and how much encoder time the real frames save.

Whisper's decoder learnt to end a transcript where the padding starts; without padding it often
repeats the sentence until `--max_new_tokens`. So beside the plain WER, the script reports the WER
of each hypothesis cut to its reference's word count ("content WER"): what the states say,
whatever the decoder's stopping.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.modeling_outputs import BaseModelOutput

from mini.demo import load_clips
from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
from qwen2_audio_graft.modeling_qwen2_audio_graft import encode_real_frames
from train.evaluation.metrics import normalize, wer_by_group


def cut_to_reference(references: list[str], hypotheses: list[str]) -> list[str]:
    """Each normalised hypothesis cut to as many words as its normalised reference."""
    return [" ".join(normalize(h).split()[: len(normalize(r).split())]) for r, h in zip(references, hypotheses)]


def transcribe(model, processor, samples, real_frames: bool, max_new_tokens: int = 120) -> tuple[str, float]:
    """Greedy English transcript of one clip and the encoder's seconds."""
    inputs = processor(samples, sampling_rate=SAMPLING_RATE, return_tensors="pt", return_attention_mask=True)
    features, mel_lengths = inputs.input_features, inputs.attention_mask.sum(-1)
    encoder = model.get_encoder()
    started = time.perf_counter()
    with torch.no_grad():
        if real_frames:
            states = encode_real_frames(encoder, features, mel_lengths)
        else:
            states = encoder(features).last_hidden_state
    seconds = time.perf_counter() - started
    with torch.no_grad():
        ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), language="en",
                             task="transcribe", num_beams=1, do_sample=False, max_length=None,
                             max_new_tokens=max_new_tokens)  # fmt: skip
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip(), seconds


def table(results: dict) -> None:
    pad, real = results["30 s windows"], results["real frames"]
    print("| source | WER, 30 s windows | WER, real frames | content WER, 30 s windows | content WER, real frames |")
    print("|---|---|---|---|---|")
    for voice in pad["wer_by_voice"]:
        print(f"| {voice} | {pad['wer_by_voice'][voice]:.1%} | {real['wer_by_voice'][voice]:.1%} "
              f"| {pad['content_wer_by_voice'][voice]:.1%} | {real['content_wer_by_voice'][voice]:.1%} |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/components/whisper-base"))
    parser.add_argument("--data", type=Path, default=Path("build/demo-corpus/devtest.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("build/real-frames-check.json"))
    parser.add_argument("--max_new_tokens", type=int, default=120)
    args = parser.parse_args(argv)
    model = WhisperForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(args.model)
    rows = load_clips(args.data)
    results = {}
    for name, real in (("30 s windows", False), ("real frames", True)):
        hypotheses, encoder_seconds = [], 0.0
        for row in rows:
            text, seconds = transcribe(model, processor, row["samples"], real, args.max_new_tokens)
            hypotheses.append(text)
            encoder_seconds += seconds
        voices, references = [r["voice"] for r in rows], [r["text"] for r in rows]
        results[name] = {"wer_by_voice": wer_by_group(voices, references, hypotheses),
                         "content_wer_by_voice": wer_by_group(voices, references, cut_to_reference(references, hypotheses)),
                         "encoder_seconds": round(encoder_seconds, 2), "hypotheses": hypotheses}  # fmt: skip
    table(results)
    print(f"encoder time over {len(rows)} clips: {results['30 s windows']['encoder_seconds']} s with 30 s windows, "
          f"{results['real frames']['encoder_seconds']} s with real frames")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

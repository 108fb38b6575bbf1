"""The mini graft through vLLM against transformers' pipeline: the same transcripts, and the speed of each.

    .venv-vllm/bin/python bench/vllm_compare.py --model build/mini-graft --data build/demo-corpus/devtest.jsonl

Greedy, 64 new tokens, both ways, on the same clips: vLLM's `LLM.generate` on all clips as one
batch, and transformers' stock `pipeline()` in batches of `--batch_size`. Prints how many
transcripts are identical, the WER of each way, clips a second, RTFx and each way's peak resident
memory; with `--out`, writes them as JSON. Run it when nothing else uses the CPU.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # vLLM spawns its engine: everything below runs in the parent only
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class PeakMemory:
    """The peak resident memory of this process and all its children (vLLM's engine runs in spawned
    processes), sampled every 0.2 s in a thread while the block runs."""

    def __enter__(self):
        import threading

        import psutil

        self.peak, self.done = 0, threading.Event()
        me = psutil.Process()

        def sample():
            while not self.done.is_set():
                total = 0
                for proc in [me, *me.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
                time.sleep(0.2)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    @property
    def gib(self) -> float:
        return round(self.peak / 2**30, 2)


def rows(manifest: Path) -> list[dict]:
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    out = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in out:
        row["samples"] = load_audio(manifest.parent / row["audio"])
    return out


def with_vllm(model: str, clips, max_tokens: int) -> tuple[list[str], float]:
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt

    prompt = build_prompt(AutoProcessor.from_pretrained(model, trust_remote_code=True))
    llm = LLM(model=model, trust_remote_code=True, dtype="bfloat16", max_model_len=2048, seed=0,
              limit_mm_per_prompt={"audio": 1})  # fmt: skip
    started = time.time()
    outs = llm.generate([{"prompt": prompt, "multi_modal_data": {"audio": (c, SAMPLING_RATE)}} for c in clips],
                        SamplingParams(temperature=0.0, max_tokens=max_tokens))  # fmt: skip
    return [o.outputs[0].text.strip() for o in outs], time.time() - started


def with_transformers(model: str, clips, max_tokens: int, batch_size: int) -> tuple[list[str], float]:
    import torch
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, dtype=torch.bfloat16)
    started = time.time()
    texts = [o["text"] for o in asr(clips, batch_size=batch_size, max_new_tokens=max_tokens,
                                   generate_kwargs={"num_beams": 1})]  # fmt: skip
    return texts, time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/mini-graft")
    parser.add_argument("--data", type=Path, default=Path("build/demo-corpus/devtest.jsonl"))
    parser.add_argument("--way", choices=("vllm", "transformers", "both"), default="both")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from train.evaluation.metrics import compute_metrics

    data = rows(args.data)
    clips, refs = [r["samples"] for r in data], [r["text"] for r in data]
    audio_seconds = sum(len(c) for c in clips) / 16000
    results = {"clips": len(clips), "audio_seconds": round(audio_seconds, 1)}
    ways = ("transformers", "vllm") if args.way == "both" else (args.way,)
    texts = {}
    for way in ways:  # one way after the other, each its own peak (the first way's memory is given back)
        with PeakMemory() as memory:
            if way == "vllm":
                texts[way], seconds = with_vllm(args.model, clips, args.max_tokens)
            else:
                texts[way], seconds = with_transformers(args.model, clips, args.max_tokens, args.batch_size)
        results[way] = {"wer": compute_metrics(refs, texts[way])["wer"], "seconds": round(seconds, 1),
                        "clips_per_second": round(len(clips) / seconds, 3), "rtfx": round(audio_seconds / seconds, 2),
                        "peak_rss_gib": memory.gib}  # fmt: skip
        print(f"{way}: " + json.dumps(results[way]), flush=True)
    if len(ways) == 2:
        same = [a == b for a, b in zip(texts["vllm"], texts["transformers"])]
        results["identical"] = sum(same)
        results["different"] = [{"reference": r, "vllm": a, "transformers": b}
                                for r, a, b, s in zip(refs, texts["vllm"], texts["transformers"], same) if not s]  # fmt: skip
        print(f"{sum(same)} of {len(same)} transcripts identical")
        for d in results["different"]:
            print(f"  REF {d['reference']}\n  VLLM {d['vllm']}\n  HF   {d['transformers']}")
    import transformers
    import vllm

    results["versions"] = {"vllm": vllm.__version__, "transformers": transformers.__version__}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    main()

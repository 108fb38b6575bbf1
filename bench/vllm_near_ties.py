"""Where vLLM's and transformers' greedy transcripts part, how close the two tokens were.

    .venv-vllm/bin/python bench/vllm_near_ties.py --compare build/vllm-compare.json

For each transcript `bench/vllm_compare.py` found different, the graft (bf16, as the pipeline runs it)
is fed its prompt, the clip and the tokens both ways share, and the logits of the token each way
chose next are compared: a gap of a fraction of a logit is a near-tie that bf16 kernels may tip
either way. Prints one line a difference and writes the gaps into the JSON (`near_ties`).
"""

import argparse
import json
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def first_split(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def gap(model, processor, clip, vllm_text: str, hf_text: str) -> dict:
    import torch

    from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt

    ours, theirs = (processor.tokenizer(t, add_special_tokens=False)["input_ids"] for t in (hf_text, vllm_text))
    split = first_split(ours, theirs)
    shared = ours[:split]
    inputs = processor(text=build_prompt(processor), audio=clip, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    extra = torch.tensor([shared], dtype=inputs["input_ids"].dtype)
    # the shared answer tokens after the prompt: text tokens (type 0), all attended
    inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    inputs["input_features"] = inputs["input_features"].to(model.dtype)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    hf_token = ours[split] if split < len(ours) else end
    vllm_token = theirs[split] if split < len(theirs) else end
    return {"position": split, "transformers": processor.tokenizer.decode([hf_token]),
            "vllm": processor.tokenizer.decode([vllm_token]),
            "logit_gap": round(float(logits[hf_token] - logits[vllm_token]), 3),
            "top_two_gap": round(float(logits.topk(2).values[0] - logits.topk(2).values[1]), 3)}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, default=Path("build/vllm-compare.json"))
    parser.add_argument("--model", default="build/mini-graft")
    parser.add_argument("--data", type=Path, default=Path("build/demo-corpus/devtest.jsonl"))
    args = parser.parse_args(argv)
    import torch
    from transformers import AutoModel, AutoProcessor

    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    results = json.loads(args.compare.read_text())
    rows = {json.loads(line)["text"]: json.loads(line) for line in args.data.read_text().splitlines()}
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True, dtype=torch.bfloat16).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    ties = []
    for different in results.get("different", []):
        clip = load_audio(args.data.parent / rows[different["reference"]]["audio"])
        ties.append({"reference": different["reference"],
                     **gap(model, processor, clip, different["vllm"], different["transformers"])})  # fmt: skip
        print(json.dumps(ties[-1]), flush=True)
    results["near_ties"] = ties
    args.compare.write_text(json.dumps(results, indent=2) + "\n")
    return ties


if __name__ == "__main__":
    main()

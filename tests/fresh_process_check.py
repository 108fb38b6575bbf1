"""Run by tests in a fresh interpreter (`python -I`, outside the repo): loads a saved graft only
through transformers' Auto classes and `pipeline()`, and prints what it found as JSON."""

import json
import sys

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
    pipeline,
)

folder, inputs_path, wav_path = sys.argv[1:4]
report = {"sys_path_has_repo": any(p.endswith("/main") or "qwen2_audio_graft" in p for p in sys.path)}
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
report["classes"] = {"config": type(config).__name__, "processor": type(processor).__name__}
saved = np.load(inputs_path)
inputs = {k: torch.from_numpy(saved[k]) for k in saved.files if k != "logits"}
errors = {}
for auto in (AutoModel, AutoModelForSpeechSeq2Seq, AutoModelForCausalLM, AutoModelForImageTextToText):
    model = auto.from_pretrained(folder, trust_remote_code=True).eval()
    report["classes"][auto.__name__] = type(model).__name__
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    errors[auto.__name__] = float(np.abs(logits - saved["logits"]).max())
report["max_logit_error"] = errors

asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)
report["pipeline_class"] = type(asr).__name__
clip = saved["clip"] if "clip" in saved.files else None
rng = np.random.RandomState(1)
clips = [(0.1 * rng.randn(n)).astype(np.float32) for n in (8000, 20000, 40000)]
one_by_one = [asr(c, max_new_tokens=5)["text"] for c in clips]
batched = [out["text"] for out in asr(clips, batch_size=2, max_new_tokens=5)]
report["batch_equals_single"] = one_by_one == batched
report["file"] = asr(wav_path, max_new_tokens=5)["text"]
report["dict_44k"] = asr({"raw": rng.randn(44100).astype(np.float32) * 0.1, "sampling_rate": 44100}, max_new_tokens=5)
report["long_70s"] = asr((0.1 * rng.randn(70 * 16000)).astype(np.float32), max_new_tokens=3)["text"]
print("REPORT " + json.dumps(report))

"""Run by tests in a fresh interpreter (`python -I`, outside the repo): loads a saved graft only
through transformers' Auto classes and `pipeline()`, and prints what it found as JSON.

transformers' FutureWarning and DeprecationWarning are errors here (the remote code runs as
`transformers_modules.*`, so its own warnings are caught too): the model, generate and pipeline
paths must call the installed transformers the way it expects.

    python -I fresh_process_check.py FOLDER INPUTS.npz CLIP.wav REPO_ROOT
"""

import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("error", category=FutureWarning, module="transformers")
warnings.filterwarnings("error", category=DeprecationWarning, module="transformers")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
    pipeline,
)

folder, inputs_path, wav_path, repo_root = sys.argv[1:5]
repo = Path(repo_root).resolve()
report = {"sys_path_has_repo": str(repo) in sys.path}
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


def exactly(new_tokens):
    """Exactly `new_tokens` generated tokens, all text (the random tiny graft would often pick
    special tokens or rows past the tokenizer, which decode to empty text)."""
    tokenizer = processor.tokenizer
    special = sorted(set(tokenizer.added_tokens_decoder) | set(range(len(tokenizer), config.text_config.vocab_size)))
    return {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "suppress_tokens": special}


# The pipeline's prompt.
PROMPT = processor.apply_chat_template(
    [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Transcribe this audio."}]}],
    tokenize=False, add_generation_prompt=True,
)  # fmt: skip


def direct(clip, new_tokens):
    """model.generate on the pipeline's prompt, greedy, exactly `new_tokens` tokens."""
    batch = processor(text=PROMPT, audio=clip, sampling_rate=16000)
    out = model.generate(**batch, do_sample=False, num_beams=1, **exactly(new_tokens))
    new = out[0, batch["input_ids"].shape[1] :]
    return processor.decode(new, skip_special_tokens=True).strip(), int((batch["input_ids"] == config.audio_token_id).sum())


# noise stands in for speech here: the energy rule takes it for speech, Silero VAD does not
asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True, speech_detector="energy")
report["pipeline_class"] = type(asr).__name__
gen = exactly(5)
rng = np.random.RandomState(1)
clips = [(0.1 * rng.randn(n)).astype(np.float32) for n in (8000, 20000, 40000)]
one_by_one = [asr(c, generate_kwargs=gen)["text"] for c in clips]
batched = [out["text"] for out in asr(clips, batch_size=2, generate_kwargs=gen)]
report["batch_equals_single"] = one_by_one == batched
report["single_equals_generate"] = one_by_one == [direct(c, 5)[0] for c in clips]
report["texts_nonempty"] = all(one_by_one)
samples, rate = soundfile.read(wav_path, dtype="float32")
report["file_equals_resampled_array"] = asr(wav_path, generate_kwargs=gen)["text"] == direct(
    librosa.resample(samples, orig_sr=rate, target_sr=16000), 5)[0]  # fmt: skip
clip_44k = (rng.randn(44100) * 0.1).astype(np.float32)
report["dict_44k_equals_resampled_array"] = (
    asr({"raw": clip_44k, "sampling_rate": 44100}, generate_kwargs=gen)["text"]
    == direct(librosa.resample(clip_44k, orig_sr=44100, target_sr=16000), 5)[0]
)
long_clip = (0.1 * rng.randn(70 * 16000)).astype(np.float32)
text, audio_tokens = direct(long_clip, 3)
report["long_70s"] = {"equals_generate": asr(long_clip, segment_audio=False, generate_kwargs=exactly(3))["text"] == text,
                      "audio_tokens": audio_tokens}  # fmt: skip
# Beam search reads each clip's prompt once; the same beams as when every row is read (the stock way).
batch = processor(text=[PROMPT] * 2, audio=[long_clip, clips[0]], sampling_rate=16000)
beams = {"num_beams": 3, "do_sample": False, "return_dict_in_generate": True, "output_scores": True, **exactly(3)}
encoder_rows = []
hook = model.model.audio_tower.register_forward_hook(lambda module, args, out: encoder_rows.append(args[0].shape[0]))
with torch.no_grad():
    once = model.generate(**batch, **beams)
    model._rows_per_clip = lambda input_ids, kwargs: 1
    every = model.generate(**batch, **beams)
    del model._rows_per_clip
hook.remove()
report["beams"] = {"encoder_windows": encoder_rows, "same_sequences": bool(torch.equal(once.sequences, every.sequences)),
                   "score_error": float((once.sequences_scores - every.sequences_scores).abs().max())}  # fmt: skip
# A recording of three sounds between pauses: segmented, with timestamps, the same at every batch size.
sound = [(0.2 * rng.randn(n)).astype(np.float32) for n in (24000, 40000, 16000)]
pause = np.zeros(12000, dtype=np.float32)
recording = np.concatenate([pause, sound[0], pause, sound[1], pause, sound[2], pause])
timed = [asr(recording, return_timestamps=True, batch_size=b, max_segment_seconds=3.0, generate_kwargs=exactly(2))
         for b in (1, 3)]  # fmt: skip
report["timestamps"] = {"chunks": [c["timestamp"] for c in timed[0]["chunks"]], "batch_1_equals_3": timed[0] == timed[1],
                        "texts": [direct(recording[int(a * 16000):int(b * 16000)], 2)[0] for a, b in
                                  (c["timestamp"] for c in timed[0]["chunks"])] == [c["text"] for c in timed[0]["chunks"]]}
# Only the saved folder's copies of the code ran: no module was loaded from the repository itself.
# The interpreter's own environment may live inside the checkout (a `.venv`): its packages do not count.
environment = Path(sys.prefix).resolve()


def from_repo(module) -> bool:
    path = getattr(module, "__file__", None)
    return bool(path) and Path(path).resolve().is_relative_to(repo) and not Path(path).resolve().is_relative_to(environment)


report["modules_from_repo"] = sorted(name for name, module in list(sys.modules.items()) if from_repo(module))
print("REPORT " + json.dumps(report))

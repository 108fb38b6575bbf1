"""The ASR pipeline class, in process: inputs it takes, the instruction prompt, its errors."""

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from tests.conftest import make_clip, non_text_tokens
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt


def text_only(asr, new_tokens=4) -> dict:
    """Generation settings for exactly `new_tokens` tokens, all of them text (`non_text_tokens`)."""
    return {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
            "suppress_tokens": non_text_tokens(asr.model, asr.processor)}  # fmt: skip


def generated(asr, clip, instruction="Transcribe this audio.", new_tokens=4):
    """(text, token count) of model.generate on the pipeline's model with exactly `new_tokens` tokens."""
    inputs = asr.processor(text=build_prompt(asr.processor, instruction), audio=clip, sampling_rate=16000)
    with torch.no_grad():
        out = asr.model.generate(**inputs, do_sample=False, num_beams=1, **text_only(asr, new_tokens))
    new = out[0, inputs["input_ids"].shape[1] :]
    return asr.processor.decode(new, skip_special_tokens=True).strip(), len(new)


@pytest.fixture(scope="module")
def asr(tiny_dir):
    # tones and noise bursts stand in for speech here: the energy rule takes them for speech, Silero VAD does not
    return pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True, speech_detector="energy")


def test_instruction_prompt_reaches_the_model(asr):
    item = next(asr.preprocess(make_clip(1.0), prompt="Translate this audio into French."))
    assert item["prompt"].endswith(
        "<|audio_bos|><|AUDIO|><|audio_eos|>Translate this audio into French.<|im_end|>\n<|im_start|>assistant\n"
    )
    default = next(asr.preprocess(make_clip(1.0)))
    assert "Transcribe this audio." in default["prompt"]
    exact = {"generate_kwargs": text_only(asr)}
    out = asr(make_clip(1.0), prompt="Translate this audio into French.", **exact)
    assert out["text"] == generated(asr, make_clip(1.0), "Translate this audio into French.")[0] != ""
    assert asr(make_clip(1.0), **exact)["text"] == generated(asr, make_clip(1.0))[0]


def test_inputs_of_every_kind_give_the_same_text(asr, tmp_path):
    clip = make_clip(1.0)
    path = tmp_path / "clip.flac"
    soundfile.write(path, clip, 16000)
    kwargs = {"generate_kwargs": text_only(asr)}
    texts = [
        asr(clip, **kwargs)["text"],
        asr({"raw": clip, "sampling_rate": 16000}, **kwargs)["text"],
        asr({"array": clip, "sampling_rate": 16000}, **kwargs)["text"],
        asr(str(path), **kwargs)["text"],
        asr(path.read_bytes(), **kwargs)["text"],
        asr([clip], **kwargs)[0]["text"],
    ]
    assert texts == [generated(asr, clip)[0]] * 6 and texts[0] != ""


def test_generate_kwargs_are_passed_on(asr):
    for count in (2, 6):
        text, tokens = generated(asr, make_clip(1.0), new_tokens=count)
        assert tokens == count
        assert asr(make_clip(1.0), generate_kwargs=text_only(asr, count))["text"] == text != ""
    settings = text_only(asr, 2)
    del settings["max_new_tokens"]  # given as the pipeline's own argument instead
    assert asr(make_clip(1.0), max_new_tokens=2, generate_kwargs=settings)["text"] == generated(
        asr, make_clip(1.0), new_tokens=2)[0]  # fmt: skip


def test_pipeline_errors(asr):
    with pytest.raises(ValueError) as info:
        asr({"raw": make_clip(1.0)})
    assert str(info.value) == 'An audio dict needs "raw" (or "array") samples and "sampling_rate", got keys [\'raw\']'
    with pytest.raises(TypeError) as info:
        asr(12)
    assert str(info.value) == "Expected a file path, bytes, an array or a {'raw', 'sampling_rate'} dict, got int"
    with pytest.raises(TypeError) as info:
        asr(make_clip(1.0), chunk_length_s=30)
    assert str(info.value) == "Unexpected arguments for the audio graft pipeline: ['chunk_length_s']"
    with pytest.raises(ValueError) as info:  # one prompt for the whole recording
        asr(np.random.default_rng(0).normal(0, 0.1, 121 * 16000).astype(np.float32), segment_audio=False)
    assert str(info.value) == "audio clip 0 is 121.0 s long; the longest accepted is 120 s (max_audio_seconds)"
    assert asr(np.zeros(121 * 16000, dtype=np.float32)) == {"text": ""}  # cut at pauses: silence holds no speech


def test_beam_width_comes_from_the_generation_config(asr, monkeypatch):
    seen = []
    generate = asr.model.generate

    def spy(**kwargs):
        seen.append((kwargs["num_beams"], kwargs["do_sample"]))
        return generate(**kwargs)

    monkeypatch.setattr(asr.model, "generate", spy)
    settings = text_only(asr, 3)
    greedy = asr(make_clip(1.0), generate_kwargs=settings)["text"]
    monkeypatch.setattr(asr.model.generation_config, "num_beams", 3)
    beams = asr(make_clip(1.0), generate_kwargs=settings)["text"]
    asr(make_clip(1.0), generate_kwargs={**settings, "num_beams": 1})
    assert seen == [(1, False), (3, False), (1, False)]
    inputs = asr.processor(text=build_prompt(asr.processor), audio=make_clip(1.0), sampling_rate=16000)
    with torch.no_grad():
        out = generate(**inputs, do_sample=False, num_beams=3, **settings)
    assert beams == asr.processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert greedy == generated(asr, make_clip(1.0), new_tokens=3)[0]


def test_a_generator_of_clips_streams_the_same_outputs(asr):
    # mini.demo feeds a generator to show progress: outputs come one by one, as for a list.
    from mini.demo import transcribe_all

    clips, settings = [make_clip(s) for s in (0.6, 1.4, 2.2)], {"generate_kwargs": text_only(asr, 3)}
    expected = [asr(clip, **settings) for clip in clips]
    assert transcribe_all(asr, clips, "clips", batch_size=2, **settings) == expected
    assert all(out["text"] for out in expected)

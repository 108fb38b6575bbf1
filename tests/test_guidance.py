"""Audio guidance (`audio_guidance_scale`): the silent branch, its cache under beam search, its settings and errors."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from tests.conftest import make_clip, non_text_tokens
from train.graft import SILENCE_LOG_MEL, AudioGuidanceLogitsProcessor, build_prompt

SR = 16000


def _inputs(processor, clips):
    return processor(text=[build_prompt(processor)] * len(clips), audio=clips, sampling_rate=SR)


def _generate(model, processor, clips, new_tokens=5, **kwargs):
    inputs = _inputs(processor, clips)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             suppress_tokens=non_text_tokens(model, processor), **kwargs)  # fmt: skip
    return out[:, inputs["input_ids"].shape[1] :].tolist()


def test_silence_is_a_constant_log_mel(tiny):
    _, processor = tiny
    features = _inputs(processor, [np.zeros(3 * SR, dtype=np.float32), np.zeros(35 * SR, dtype=np.float32)])
    assert features["input_features"].shape == (3, 80, 3000)
    assert features["input_features"].unique().tolist() == [SILENCE_LOG_MEL]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_scale_0_decodes_as_if_the_audio_were_silent(tiny, num_beams):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(2.5, seed=1)]
    silent = [np.zeros_like(clip) for clip in clips]
    heard = _generate(model, processor, clips, num_beams=num_beams)
    assert heard != _generate(model, processor, silent, num_beams=num_beams)  # the audio matters to this graft
    assert _generate(model, processor, clips, num_beams=num_beams, audio_guidance_scale=0.0) == _generate(
        model, processor, silent, num_beams=num_beams)  # fmt: skip
    assert _generate(model, processor, clips, num_beams=num_beams, audio_guidance_scale=1.0) == heard


def test_the_silent_branch_follows_the_beams(tiny, monkeypatch):
    """At every step of a beam search, the cached silent logits of each row equal a forward pass from
    scratch over the silent prompt followed by that row's tokens (rows reorder between steps)."""
    model, processor = tiny
    clips = [make_clip(65.0), make_clip(1.0, seed=1)]  # three windows, then one
    inputs = _inputs(processor, clips)
    order = torch.argsort(inputs["attention_mask"].to(torch.int8), dim=1, stable=True)  # generate left-pads
    prompt_mask = inputs["attention_mask"].gather(1, order)
    windows = model._windows_by_row(inputs["input_ids"].gather(1, order), inputs["input_features_mask"], 3)
    checked, cached = [], AudioGuidanceLogitsProcessor._silent_logits

    def both(self, input_ids):
        logits = cached(self, input_ids)
        mask = torch.cat([prompt_mask.repeat_interleave(3, 0),
                          torch.ones_like(input_ids[:, prompt_mask.shape[1] :])], dim=1)  # fmt: skip
        with torch.no_grad():
            scratch = model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                            input_features=torch.full_like(inputs["input_features"][windows], SILENCE_LOG_MEL),
                            input_features_mask=inputs["input_features_mask"][windows]).logits[:, -1]  # fmt: skip
        torch.testing.assert_close(logits, scratch.float(), rtol=1e-4, atol=1e-4)
        checked.append(input_ids.shape)
        return logits

    monkeypatch.setattr(AudioGuidanceLogitsProcessor, "_silent_logits", both)
    _generate(model, processor, clips, new_tokens=6, num_beams=3, audio_guidance_scale=2.0)
    assert len(checked) == 6 and checked[0][0] == 6  # 2 clips x 3 beams, one check a step


def test_guidance_changes_beam_search_and_comes_from_the_generation_config(tiny, monkeypatch):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(2.5, seed=1), make_clip(4.0, seed=2)]
    plain = _generate(model, processor, clips, num_beams=2)
    guided = _generate(model, processor, clips, num_beams=2, audio_guidance_scale=3.0)
    assert guided != plain
    monkeypatch.setattr(model.generation_config, "audio_guidance_scale", 3.0, raising=False)
    assert _generate(model, processor, clips, num_beams=2) == guided
    assert _generate(model, processor, clips, num_beams=2, audio_guidance_scale=1) == plain


def test_the_pipeline_decodes_with_the_models_guidance(tiny_dir, monkeypatch):
    asr = pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True)
    settings = {"max_new_tokens": 4, "min_new_tokens": 4, "suppress_tokens": non_text_tokens(asr.model, asr.processor)}
    clip = make_clip(1.5, seed=3)
    silent = asr(np.zeros_like(clip), generate_kwargs=settings)["text"]
    assert asr(clip, generate_kwargs=settings)["text"] != silent
    assert asr(clip, generate_kwargs={**settings, "audio_guidance_scale": 0.0})["text"] == silent
    monkeypatch.setattr(asr.model.generation_config, "audio_guidance_scale", 0.0, raising=False)
    assert asr(clip, generate_kwargs=settings)["text"] == silent


def test_guidance_errors(tiny):
    model, processor = tiny
    with pytest.raises(ValueError) as info:
        _generate(model, processor, [make_clip(1.0)], audio_guidance_scale=-0.5)
    assert str(info.value) == "audio_guidance_scale must be 0 or more (1 turns it off), got -0.5"
    text = processor(text=["hello"], return_tensors="pt")
    with pytest.raises(ValueError) as info:
        model.generate(**text, max_new_tokens=2, audio_guidance_scale=2.0)
    assert str(info.value) == ("audio_guidance_scale needs input_ids and input_features (the silent branch encodes "
                               "silent log-mels); pass audio_guidance_scale=1 to decode without it")  # fmt: skip

"""`encode_padding=False`: the encoder sees each window's real frames only, the same in any batch."""

import copy
import json

import pytest
import torch
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from tests.conftest import make_clip
from tests.test_encoder_cache import _clip_manifest
from train.stages.data import SpeechCollator, SpeechDataset, load_rows
from train.stages.encoder_cache import with_encoder_cache
from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
from qwen2_audio_graft.modeling_qwen2_audio_graft import encode_real_frames
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
from train.building.tiny import build_tiny

SR = 16000


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    model, processor = build_tiny(tmp_path_factory.mktemp("trimmed"), audio_downsample=4, encode_padding=False)
    return model.eval(), processor


def _whisper_on_frames(tower, features, frames):
    """transformers' own WhisperEncoder for exactly `frames` encoder frames (2 * frames mel frames)."""
    config = copy.deepcopy(tower.config)
    config.max_source_positions = frames
    short = WhisperEncoder(config).eval()
    state = {k: v for k, v in tower.state_dict().items()}
    state["embed_positions.weight"] = state["embed_positions.weight"][:frames]
    short.load_state_dict(state)
    return short(features[:, :, : 2 * frames]).last_hidden_state


def test_real_frames_equal_whispers_own_encoder_on_the_cut_window(trimmed):
    model, processor = trimmed
    tower = model.model.audio_tower
    clips = [make_clip(2.0), make_clip(0.5, seed=1), make_clip(3.2, seed=2)]  # 200, 50, 320 mel frames
    features = processor(text="<|AUDIO|>" * 3, audio=clips, sampling_rate=SR)
    lengths = features["input_features_mask"].sum(-1)
    assert lengths.tolist() == [200, 50, 320]
    with torch.no_grad():
        batched = encode_real_frames(tower, features["input_features"], lengths)  # (3, 160, d_model)
        assert batched.shape[:2] == (3, 160)
        for index, mel in enumerate(lengths.tolist()):
            alone = _whisper_on_frames(tower, features["input_features"][index : index + 1], mel // 2)
            torch.testing.assert_close(batched[index, : mel // 2], alone[0], rtol=1e-5, atol=1e-5)
            assert not batched[index, mel // 2 :].any()  # zero past the real frames


def test_odd_mel_lengths_match_encoding_alone(trimmed):
    model, processor = trimmed
    tower = model.model.audio_tower
    clips = [make_clip(1.0 + 7 / SR), make_clip(2.5, seed=1)]  # 101 and 250 mel frames
    features = processor(text="<|AUDIO|>" * 2, audio=clips, sampling_rate=SR)
    lengths = features["input_features_mask"].sum(-1)
    assert lengths.tolist() == [101, 250]
    with torch.no_grad():
        batched = encode_real_frames(tower, features["input_features"], lengths)
        alone = encode_real_frames(tower, features["input_features"][:1], lengths[:1])
    assert alone.shape[1] == 51
    torch.testing.assert_close(batched[0, :51], alone[0], rtol=1e-5, atol=1e-5)


def test_trimmed_generation_is_the_same_batched_and_alone_and_differs_from_padded(trimmed):
    model, processor = trimmed
    clips = [make_clip(1.0), make_clip(2.5, seed=1), make_clip(31.0, seed=3)]

    def generate(model, batch):
        inputs = processor(text=[build_prompt(processor)] * len(batch), audio=batch, sampling_rate=SR)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6)
        return out[:, inputs["input_ids"].shape[1] :].tolist()

    assert generate(model, clips) == [generate(model, [clip])[0] for clip in clips]
    inputs = processor(text="<|AUDIO|>", audio=clips[0], sampling_rate=SR)
    padded = copy.copy(model.model)
    padded.config = Qwen2AudioGraftConfig(**{**model.config.to_dict(), "encode_padding": True})
    with torch.no_grad():
        real = model.model.encode_audio(inputs["input_features"], inputs["input_features_mask"])
        full = padded.encode_audio(inputs["input_features"], inputs["input_features_mask"])
    assert real.shape[1] == 50 and full.shape[1] == 1500
    assert not torch.allclose(real, full[:, :50], atol=1e-3)  # the padding changes Whisper's states


def test_trimmed_cache_gives_the_loss_of_encoding_on_the_fly_and_a_cache_of_its_own(trimmed, tmp_path):
    model, processor = trimmed
    manifest = _clip_manifest(tmp_path / "audio", [0.37, 2.01, 31.3])
    dataset = SpeechDataset(load_rows(str(manifest)), max_seconds=120)
    cached = with_encoder_cache(model, processor, dataset, tmp_path / "cache")
    collator = SpeechCollator(processor)
    plain, stored = collator([dataset[i] for i in range(3)]), collator([cached[i] for i in range(3)])
    model.train()
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(**stored).loss, model(**plain).loss, rtol=1e-6, atol=1e-6)
    finally:
        model.eval()
    padded, _ = build_tiny(tmp_path / "padded", audio_downsample=4)
    padded.model.audio_tower.load_state_dict(model.model.audio_tower.state_dict())
    with_encoder_cache(padded, processor, dataset, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # same weights, other way of encoding


def test_encode_padding_must_be_a_bool():
    with pytest.raises(ValueError) as info:
        Qwen2AudioGraftConfig(encode_padding="no")
    assert str(info.value) == "encode_padding must be true or false, got 'no'"


def test_saved_config_keeps_encode_padding(trimmed, tmp_path):
    model, processor = trimmed
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["encode_padding"] is False

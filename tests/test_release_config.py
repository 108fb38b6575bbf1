"""The root config.json is the release 7B graft and stays in step with `train.building.release.release_config`."""

import json
from pathlib import Path

import torch
from transformers import AutoConfig

from train.building.release import release_config
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

ROOT = Path(__file__).resolve().parent.parent


def test_root_config_matches_the_builder():
    on_disk = json.loads((ROOT / "config.json").read_text())
    built = json.loads(release_config().to_json_string())
    on_disk.pop("transformers_version"), built.pop("transformers_version")
    assert on_disk == built


def test_root_config_loads_as_the_release_graft():
    config = AutoConfig.from_pretrained(ROOT, trust_remote_code=True)
    audio, text, vision = config.audio_config, config.text_config, config.vision_config
    assert (audio.d_model, audio.encoder_layers, audio.encoder_attention_heads, audio.num_mel_bins) == (1280, 32, 20, 128)
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3584, 28, 152064)
    assert (vision.depth, vision.embed_dim, vision.hidden_size) == (32, 1280, 3584)
    assert (config.audio_bos_token_id, config.audio_token_id, config.audio_eos_token_id) == (151657, 151658, 151659)
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSpeechSeq2Seq", "AutoModelForCausalLM",
                                    "AutoModelForImageTextToText"}  # fmt: skip
    assert config.custom_pipelines["automatic-speech-recognition"]["pt"] == ["AutoModelForSpeechSeq2Seq"]


def test_release_graft_size_on_the_meta_device():
    with torch.device("meta"):
        model = Qwen2AudioGraftForConditionalGeneration(release_config())
    sizes = {name: sum(p.numel() for p in module.parameters()) for name, module in model.model.named_children()}
    assert sizes["audio_projector"] == 1280 * 3584 + 3584 + 3584  # linear weight and bias, norm gain
    assert 630e6 < sizes["audio_tower"] < 640e6  # whisper-large-v3-turbo's encoder
    assert 670e6 < sizes["visual"] < 680e6  # Qwen2-VL's ViT
    total = sum(p.numel() for p in model.parameters())
    assert 8.9e9 < total < 9.0e9, total

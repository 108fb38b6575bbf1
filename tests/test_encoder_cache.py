"""Stored encoder outputs: the same logits and loss as encoding on the fly, and stale data refused."""

import json

import numpy as np
import pytest
import soundfile
import torch

from tests.conftest import make_clip
from train.stages.data import SpeechCollator, SpeechDataset, load_rows
from train.stages.encoder_cache import INDEX_FILE, with_encoder_cache
from train.building.tiny import build_tiny


def _clip_manifest(folder, seconds):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, length in enumerate(seconds):
        soundfile.write(folder / f"c{index}.wav", make_clip(length, seed=index), 16000, subtype="FLOAT")
        rows.append({"audio": f"c{index}.wav", "text": f"clip number {index}", "id": f"c{index}"})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "train.jsonl"


@pytest.mark.parametrize("downsample", [1, 2, 4, 8])
def test_stored_states_give_the_loss_and_logits_of_encoding_on_the_fly(tmp_path, downsample):
    model, processor = build_tiny(tmp_path / "g", audio_downsample=downsample)
    # 0.37 s and 2.01 s leave partial last tokens; 31.3 s spans two windows.
    manifest = _clip_manifest(tmp_path / "audio", [0.37, 2.01, 31.3])
    dataset = SpeechDataset(load_rows(str(manifest)), max_seconds=120)
    cached = with_encoder_cache(model, processor, dataset, tmp_path / "cache")
    collator = SpeechCollator(processor)
    items = [dataset[i] for i in range(3)]
    plain, stored = collator(items), collator([cached[i] for i in range(3)])
    assert "input_features" not in stored and "audio_encoder_states" not in plain
    frames = stored["audio_encoder_states"].shape
    assert frames[0] == 4 and frames[1] == 1500  # the full first window of the long clip is the longest
    lengths = [len(cached[i]["encoder_states"][-1]) for i in range(3)]
    assert lengths == [24, 104, 72]  # real encoder frames (19, 101, 65) rounded up to 8
    model.train()  # the answer-only loss path of training
    with torch.no_grad():
        loss_plain = model(**plain).loss
        loss_stored = model(**stored).loss
    torch.testing.assert_close(loss_stored, loss_plain, rtol=1e-6, atol=1e-6)
    model.eval()
    with torch.no_grad():
        logits_plain = model(**{k: v for k, v in plain.items() if k != "labels"}).logits
        logits_stored = model(**{k: v for k, v in stored.items() if k != "labels"}).logits
    torch.testing.assert_close(logits_stored, logits_plain, rtol=1e-5, atol=1e-5)


def test_cache_is_reused_and_refuses_changed_audio(tmp_path):
    model, processor = build_tiny(tmp_path / "g", audio_downsample=4)
    manifest = _clip_manifest(tmp_path / "audio", [1.0, 2.0])
    dataset = SpeechDataset(load_rows(str(manifest)), max_seconds=120)
    first = with_encoder_cache(model, processor, dataset, tmp_path / "cache")
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and (folders[0] / INDEX_FILE).exists()
    written = (folders[0] / INDEX_FILE).stat().st_mtime_ns
    again = with_encoder_cache(model, processor, dataset, tmp_path / "cache")
    assert (folders[0] / INDEX_FILE).stat().st_mtime_ns == written  # read back, not rebuilt
    torch.testing.assert_close(again[1]["encoder_states"][0], first[1]["encoder_states"][0], rtol=0, atol=0)

    soundfile.write(tmp_path / "audio" / "c1.wav", make_clip(2.0, seed=7), 16000, subtype="FLOAT")
    with pytest.raises(ValueError) as info:
        again[1]
    assert str(info.value) == (
        f"The audio of row c1 changed since the encoder cache in {folders[0]} was written: delete that folder to rebuild it"
    )

    with torch.no_grad():  # a different encoder gets a cache of its own
        model.model.audio_tower.layer_norm.bias.add_(0.1)
    with_encoder_cache(model, processor, dataset, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_too_few_stored_frames_and_both_inputs_are_refused(tiny):
    model, processor = tiny
    clip = make_clip(2.0)
    inputs = processor(text="<|AUDIO|>", audio=clip, sampling_rate=16000)
    states = model.model.audio_tower(inputs["input_features"]).last_hidden_state
    needed = model.model.encoder_frames_needed(inputs["input_features_mask"])[0]
    short = {k: v for k, v in inputs.items() if k != "input_features"}
    with pytest.raises(ValueError) as info:
        model(**short, audio_encoder_states=states[:, : needed - 1])
    assert str(info.value) == f"audio_encoder_states window 0 has {needed - 1} frames; its audio needs the first {needed}"
    with pytest.raises(ValueError) as info:
        model(**inputs, audio_encoder_states=states)
    assert str(info.value) == "Pass input_features or audio_encoder_states, not both"
    width = model.config.audio_config.d_model
    with pytest.raises(ValueError) as info:
        model(**short, audio_encoder_states=states[0])
    assert str(info.value) == f"audio_encoder_states must have shape (windows, frames, {width}), got {tuple(states[0].shape)}"
    assert np.isfinite(model(**short, audio_encoder_states=states[:, :needed]).logits.detach().numpy()).all()

"""Audio-token counts, placeholder expansion and the errors for bad input."""

import numpy as np
import pytest
import torch

from tests.conftest import make_clip
from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig, num_audio_tokens

SR = 16000


@pytest.mark.parametrize(
    ("seconds", "downsample", "expected"),
    [
        (2, 1, 100), (30, 1, 1500), (70, 1, 3500),
        (2, 2, 50), (30, 2, 750), (70, 2, 1750),
        (2, 4, 25), (30, 4, 375), (70, 4, 875),
        (2, 8, 13), (30, 8, 188), (70, 8, 188 + 188 + 63),
    ],
)  # fmt: skip
def test_num_audio_tokens_known_values(seconds, downsample, expected):
    assert num_audio_tokens(seconds * SR, downsample) == expected


def test_num_audio_tokens_rounds_partial_frames_up():
    assert num_audio_tokens(1) == 1
    assert num_audio_tokens(161) == 1  # two mel frames, one encoder frame
    assert num_audio_tokens(321) == 2  # three mel frames, two encoder frames
    assert num_audio_tokens(30 * SR + 1) == 1501  # one sample into a second window


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0,), ValueError, "num_samples must be positive, got 0"),
        ((2.5,), TypeError, "num_samples must be an int, got float"),
        ((16000, 3), ValueError, "audio_downsample must be one of (1, 2, 4, 8), got 3"),
    ],
)
def test_num_audio_tokens_rejects_bad_arguments(args, error, message):
    with pytest.raises(error) as info:
        num_audio_tokens(*args)
    assert str(info.value) == message


def test_config_rejects_unknown_projector_and_downsample():
    with pytest.raises(ValueError) as info:
        Qwen2AudioGraftConfig(projector_type="conv")
    assert str(info.value) == "projector_type must be one of ('linear', 'mlp'), got 'conv'"
    with pytest.raises(ValueError) as info:
        Qwen2AudioGraftConfig(audio_downsample=3)
    assert str(info.value) == "audio_downsample must be one of (1, 2, 4, 8), got 3"


@pytest.mark.parametrize("seconds", [2, 30, 70, 0.0123, 30.0071, 61.2345])
def test_processor_expands_to_the_pure_count(tiny, seconds):
    model, processor = tiny
    clip = make_clip(seconds)
    inputs = processor(text="<|audio_bos|><|AUDIO|><|audio_eos|>hi", audio=clip, sampling_rate=SR)
    n_tokens = int((inputs["input_ids"] == model.config.audio_token_id).sum())
    assert n_tokens == num_audio_tokens(len(clip), model.config.audio_downsample)
    assert inputs["input_features"].shape == (-(-len(clip) // (30 * SR)), 80, 3000)
    assert inputs["input_features_mask"].sum().item() == sum(-(-min(30 * SR, len(clip) - s) // 160)
                                                             for s in range(0, len(clip), 30 * SR))  # fmt: skip
    # The model's features agree with the placeholders: no error, one feature per token.
    with torch.no_grad():
        features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
    assert features.shape == (n_tokens, model.config.text_config.hidden_size)


def test_mask_without_features_is_the_feature_extractors_mask(tiny):
    _, processor = tiny
    clips = [np.zeros(n, dtype=np.float32) + 0.1 for n in (1, 159, 160, 161, 16000, 30 * SR, 30 * SR + 1, 61 * SR + 7)]
    text = ["<|AUDIO|>"] * len(clips)
    full = processor(text=text, audio=clips, sampling_rate=SR)
    mask_only = processor(text=text, audio=clips, sampling_rate=SR, audio_features=False)
    assert "input_features" not in mask_only
    assert mask_only["input_features_mask"].dtype == full["input_features_mask"].dtype
    assert torch.equal(mask_only["input_features_mask"], full["input_features_mask"])
    assert torch.equal(mask_only["input_ids"], full["input_ids"])
    assert mask_only["input_features_mask"].sum(-1).tolist()[:4] == [1, 1, 1, 2]


def test_a_two_second_clip_costs_a_fifteenth_of_thirty(tiny):
    _, processor = tiny
    short = processor(text="<|AUDIO|>", audio=make_clip(2), sampling_rate=SR)["input_ids"].shape[1]
    full = processor(text="<|AUDIO|>", audio=make_clip(30), sampling_rate=SR)["input_ids"].shape[1]
    assert (short, full) == (100, 1500)


def test_any_rate_dtype_and_channel_layout(tiny):
    _, processor = tiny
    mono = make_clip(1.0, sampling_rate=44100)
    stereo_first = np.stack([mono, mono])  # (channels, samples)
    stereo_last = stereo_first.T  # (samples, channels)
    as_int16 = (mono * 32767).astype(np.int16)
    counts = []
    for clip in (mono, stereo_first, stereo_last, as_int16, torch.from_numpy(mono)):
        inputs = processor(text="<|AUDIO|>", audio=clip, sampling_rate=44100)
        counts.append(inputs["input_ids"].shape[1])
    assert counts == [50] * 5
    # Resampled with librosa to 16 kHz: the same second of audio at either rate gives the same features.
    at_16k = processor(text="<|AUDIO|>", audio=make_clip(1.0), sampling_rate=SR)
    assert at_16k["input_features_mask"].sum() == 100


def test_batch_of_different_lengths(tiny):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(35.0, seed=1), make_clip(0.5, seed=2)]
    texts = ["<|AUDIO|>a", "<|AUDIO|>bb", "x<|AUDIO|>"]
    inputs = processor(text=texts, audio=clips, sampling_rate=SR)
    per_row = (inputs["input_ids"] == model.config.audio_token_id).sum(-1).tolist()
    assert per_row == [50, 1500 + 250, 25]
    assert inputs["input_features"].shape[0] == 4  # 1 + 2 + 1 windows


BAD_AUDIO = [
    (np.zeros(0, dtype=np.float32), ValueError, "audio clip 0 is empty"),
    (np.array([0.0, np.nan] * 800, dtype=np.float32), ValueError, "audio clip 0 holds NaN or infinite samples"),
    (np.array([0.0, np.inf] * 800, dtype=np.float32), ValueError, "audio clip 0 holds NaN or infinite samples"),
    (np.zeros((2, 2, 800), dtype=np.float32), ValueError,
     "audio clip 0 must be 1-D (samples) or 2-D (channels and samples), got shape (2, 2, 800)"),
    (np.zeros(121 * SR, dtype=np.float32), ValueError,
     "audio clip 0 is 121.0 s long; the longest accepted is 120 s (max_audio_seconds)"),
    (np.zeros(1600, dtype=np.complex64), TypeError, "audio clip 0 must hold float or integer samples, got dtype complex64"),
    ([0.1, 0.2], TypeError, "audio clip 0 must be a numpy array or torch tensor, got float"),
]  # fmt: skip


@pytest.mark.parametrize(("clip", "error", "message"), BAD_AUDIO)
def test_bad_audio_raises_with_its_message(tiny, clip, error, message):
    _, processor = tiny
    with pytest.raises(error) as info:
        processor(text="<|AUDIO|>", audio=clip, sampling_rate=SR)
    assert str(info.value) == message


def test_placeholder_and_clip_counts_must_agree(tiny):
    _, processor = tiny
    with pytest.raises(ValueError) as info:
        processor(text="<|AUDIO|><|AUDIO|>", audio=make_clip(1), sampling_rate=SR)
    assert str(info.value) == "The text holds 2 <|AUDIO|> placeholders but 1 audio clips were given"
    with pytest.raises(ValueError) as info:
        processor(text="no placeholder", audio=[make_clip(1), make_clip(1)], sampling_rate=SR)
    assert str(info.value) == "The text holds 0 <|AUDIO|> placeholders but 2 audio clips were given"
    with pytest.raises(ValueError) as info:
        processor(text="<|AUDIO|>")
    assert str(info.value) == "The text holds 1 <|AUDIO|> placeholders but 0 audio clips were given"


def test_sampling_rate_is_required(tiny):
    _, processor = tiny
    with pytest.raises(ValueError) as info:
        processor(text="<|AUDIO|>", audio=make_clip(1))
    assert str(info.value) == "sampling_rate is required with audio (the rate of the clips in Hz, e.g. 16000)"


def test_model_rejects_feature_placeholder_mismatch(tiny):
    model, processor = tiny
    inputs = processor(text="<|AUDIO|>", audio=make_clip(1), sampling_rate=SR)
    inputs["input_ids"] = inputs["input_ids"][:, 1:]  # one placeholder fewer than the features
    inputs["attention_mask"] = inputs["attention_mask"][:, 1:]
    inputs["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, 1:]
    with pytest.raises(ValueError) as info:
        model(**inputs)
    assert str(info.value) == (
        "Audio features and <|AUDIO|> tokens do not match: the prompt holds 49 <|AUDIO|> tokens "
        "but the audio gives 50 features"
    )


def test_model_rejects_placeholders_without_features(tiny):
    model, processor = tiny
    inputs = processor(text="<|AUDIO|>", audio=make_clip(1), sampling_rate=SR)
    with pytest.raises(ValueError) as info:
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert str(info.value) == "The prompt holds 50 <|AUDIO|> tokens but no input_features were given"


def test_model_rejects_wrong_feature_shapes(tiny):
    model, processor = tiny
    inputs = processor(text="<|AUDIO|>", audio=make_clip(1), sampling_rate=SR)
    with pytest.raises(ValueError) as info:
        model.get_audio_features(inputs["input_features"][:, :, :1500], inputs["input_features_mask"])
    assert str(info.value) == "input_features must have shape (windows, 80, 3000), got (1, 80, 1500)"
    with pytest.raises(ValueError) as info:
        model.get_audio_features(inputs["input_features"], None)
    assert str(info.value) == "input_features_mask must have shape (1, 3000), got None"
    with pytest.raises(ValueError) as info:
        model.get_audio_features(inputs["input_features"], torch.zeros(1, 3000, dtype=torch.long))
    assert str(info.value) == "input_features_mask row 0 marks no audio: every window must hold audio"


def test_chat_template_refuses_video_and_writes_audio_and_image_placeholders(tiny):
    _, processor = tiny
    video = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    with pytest.raises(ValueError) as info:
        processor.apply_chat_template(video, tokenize=False, add_generation_prompt=True)
    assert str(info.value) == "This processor takes no video: send frames as images, or audio and text"
    with pytest.raises(ValueError):
        processor.apply_chat_template([video], tokenize=False)  # a batch of conversations too
    mixed = [{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "Same?"}]}]
    assert processor.apply_chat_template(mixed, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|audio_bos|><|AUDIO|><|audio_eos|>Same?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

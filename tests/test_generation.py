"""Forward and generate: batching, padding sides, beams, images beside audio, downsample factors."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_clip
from qwen2_audio_graft.configuration_qwen2_audio_graft import num_audio_tokens
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
from train.building.tiny import build_tiny

SR = 16000


def _generate(model, processor, clips, max_new_tokens=6, **kwargs):
    prompts = [build_prompt(processor)] * len(clips)
    inputs = processor(text=prompts, audio=clips, sampling_rate=SR)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, **kwargs)
    return out[:, inputs["input_ids"].shape[1] :].tolist()


def test_batched_generation_equals_one_by_one(tiny):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(2.5, seed=1), make_clip(4.0, seed=2), make_clip(31.0, seed=3)]
    batched = _generate(model, processor, clips)
    single = [_generate(model, processor, [clip])[0] for clip in clips]
    assert batched == single


def test_right_and_left_padding_generate_the_same(tiny):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(3.0, seed=1)]
    prompts = [build_prompt(processor)] * 2
    right = processor(text=prompts, audio=clips, sampling_rate=SR)
    processor.tokenizer.padding_side = "left"
    try:
        left = processor(text=prompts, audio=clips, sampling_rate=SR)
    finally:
        processor.tokenizer.padding_side = "right"
    assert not torch.equal(right["input_ids"], left["input_ids"])
    with torch.no_grad():
        a = model.generate(**right, max_new_tokens=5, min_new_tokens=5)
        b = model.generate(**left, max_new_tokens=5, min_new_tokens=5)
    assert torch.equal(a, b)


def test_beam_search_pairs_rows_with_their_own_windows(tiny):
    model, processor = tiny
    clips = [make_clip(65.0), make_clip(1.0, seed=1)]  # three windows, then one
    beams = _generate(model, processor, clips, num_beams=2, max_new_tokens=3)
    assert len(beams) == 2 and all(len(row) == 3 for row in beams)
    alone = _generate(model, processor, clips[1:], num_beams=2, max_new_tokens=3)
    assert beams[1] == alone[0]


def test_audio_changes_the_output(tiny):
    model, processor = tiny
    inputs_a = processor(text="<|AUDIO|>", audio=make_clip(1.0), sampling_rate=SR)
    inputs_b = processor(text="<|AUDIO|>", audio=make_clip(1.0, seed=5), sampling_rate=SR)
    with torch.no_grad():
        logits_a, logits_b = model(**inputs_a).logits, model(**inputs_b).logits
    assert not torch.allclose(logits_a, logits_b)


def test_image_audio_and_text_in_one_prompt(tiny):
    model, processor = tiny
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "Both?"}]}
    ]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|><|audio_bos|><|AUDIO|><|audio_eos|>Both?" in prompt
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (56, 56, 3), dtype=np.uint8))
    inputs = processor(text=prompt, audio=make_clip(1.0), images=image, sampling_rate=SR)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 4  # 4x4 patches merged 2x2
    assert int((inputs["mm_token_type_ids"] == 1).sum()) == 4
    with torch.no_grad():
        logits = model(**inputs).logits
        other = processor(text=prompt, audio=make_clip(1.0), images=Image.new("RGB", (56, 56)), sampling_rate=SR)
        other_logits = model(**other).logits
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4)
    assert not torch.allclose(logits[:, -1], other_logits[:, -1])  # the image reaches the LLM
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)


def test_image_count_must_match_placeholders(tiny):
    _, processor = tiny
    with pytest.raises(ValueError) as info:
        processor(text="<|image_pad|><|image_pad|>", images=Image.new("RGB", (56, 56)))
    assert str(info.value) == "The text holds 2 <|image_pad|> placeholders but 1 images were given"


@pytest.mark.parametrize("projector_type", ["linear", "mlp"])
@pytest.mark.parametrize("downsample", [1, 2, 4, 8])
def test_every_downsample_and_projector(tmp_path, downsample, projector_type):
    model, processor = build_tiny(tmp_path / "g", audio_downsample=downsample, projector_type=projector_type)
    clip = make_clip(31.0)
    inputs = processor(text="<|AUDIO|>", audio=clip, sampling_rate=SR)
    expected = num_audio_tokens(len(clip), downsample)
    assert int((inputs["input_ids"] == model.config.audio_token_id).sum()) == expected
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, expected, model.config.text_config.vocab_size)


def test_audio_only_model_has_no_vision_tower(tmp_path):
    from train.building.folder import make_processor
    from train.building.tiny import tiny_config, tiny_tokenizer
    from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    config.use_vision_tower = False
    model = Qwen2AudioGraftForConditionalGeneration(config).eval()
    assert model.model.visual is None
    assert not any(name.startswith("model.visual.") for name in model.state_dict())
    processor = make_processor(tokenizer, config)
    inputs = processor(text="<|image_pad|>", images=Image.new("RGB", (56, 56)))
    with pytest.raises(ValueError) as info:
        model(**inputs)
    assert str(info.value) == "This model was built with use_vision_tower=False: it takes no images or video"
    audio_inputs = processor(text="<|AUDIO|>", audio=make_clip(1.0), sampling_rate=SR)
    with torch.no_grad():
        assert model(**audio_inputs).logits.shape[1] == 50


def test_training_loss_uses_answer_positions_only_and_equals_the_full_loss(tiny):
    from train.stages.data import SpeechCollator

    model, processor = tiny
    batch = SpeechCollator(processor)([{"audio": make_clip(1.0), "text": "ab"}, {"audio": make_clip(2.0, 1), "text": "c"}])
    with torch.no_grad():
        full = model(**batch)  # eval mode: the parent's loss over full logits
        model.train()
        try:
            answer_only = model(**batch)
        finally:
            model.eval()
    n_answer = int((batch["labels"][:, 1:] != -100).sum())
    assert n_answer == 2 + 1 + 2  # the answers and their <|im_end|>
    assert answer_only.logits.shape == (n_answer, model.config.text_config.vocab_size)
    assert full.logits.shape[:2] == batch["input_ids"].shape
    torch.testing.assert_close(answer_only.loss, full.loss, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        in_eval_mode = model.answer_loss(**batch)  # the same path, asked for outside training
    assert in_eval_mode.logits.shape == answer_only.logits.shape and torch.equal(in_eval_mode.loss, answer_only.loss)


def test_last_logits_come_from_a_contiguous_lm_head_input(tiny):
    # generate's prefill asks for the last position only (logits_to_keep=1): lm_head must get those rows
    # gathered, not a strided view (torch's CPU bf16 matmul of a strided 3-D input takes a reference path).
    model, processor = tiny
    inputs = processor(text=[build_prompt(processor, "Transcribe.")] * 2, audio=[make_clip(1.0), make_clip(2.0, 1)],
                       sampling_rate=SR)  # fmt: skip
    seen = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    try:
        with torch.no_grad():
            last, full = model(**inputs, logits_to_keep=1).logits, model(**inputs).logits
    finally:
        hook.remove()
    assert seen == [True, True]
    assert last.shape == (2, 1, model.config.text_config.vocab_size)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-6)


def test_static_cache_generates_what_the_dynamic_cache_does(tiny):
    model, processor = tiny
    clips = [make_clip(1.0), make_clip(31.0, seed=3)]
    assert _generate(model, processor, clips, cache_implementation="static") == _generate(model, processor, clips)


def test_beam_search_reads_each_prompt_once_and_decodes_as_every_row_would(tiny, monkeypatch):
    # The beams of a clip share its prompt: the encoder and the LLM read it once per clip, not once per beam.
    model, processor = tiny
    clips = [make_clip(65.0), make_clip(1.0, seed=1), make_clip(2.5, seed=2)]  # three windows, then one each
    inputs = processor(text=[build_prompt(processor)] * 3, audio=clips, sampling_rate=SR)

    def beams():
        # hooks on the session's tiny model, removed again so that no later test carries them
        windows, prompt_rows = [], []
        hooks = [model.model.audio_tower.register_forward_hook(lambda module, args, out: windows.append(args[0].shape[0])),
                 model.model.language_model.register_forward_pre_hook(
                     lambda module, args, kwargs: prompt_rows.append(kwargs["inputs_embeds"].shape[:2]), with_kwargs=True)]  # fmt: skip
        try:
            with torch.no_grad():
                out = model.generate(**inputs, num_beams=3, num_return_sequences=2, max_new_tokens=4, min_new_tokens=4,
                                     return_dict_in_generate=True, output_scores=True)  # fmt: skip
        finally:
            for hook in hooks:
                hook.remove()
        return out, windows, prompt_rows[0]

    once, once_windows, once_prompt = beams()
    assert once_windows == [5] and once_prompt == (3, inputs["input_ids"].shape[1])
    monkeypatch.setattr(type(model), "_rows_per_clip", lambda self, input_ids, kwargs: 1)
    every, every_windows, every_prompt = beams()
    assert every_windows == [15] and every_prompt == (9, inputs["input_ids"].shape[1])
    assert torch.equal(once.sequences, every.sequences)
    torch.testing.assert_close(once.sequences_scores, every.sequences_scores)

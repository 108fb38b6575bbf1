"""The vLLM plugin on CPU (`make vllm-test`, in .venv-vllm): a small random graft served by vLLM gives
transformers' greedy tokens, bad prompts get clear errors, long audio is cut at pauses like the pipeline.

vLLM's engine runs in a spawned process: every LLM here is built once per module.
"""

import numpy as np
import pytest
import torch

from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt, split_at_pauses
from qwen2_audio_graft_vllm.segments import pause_segments

RATE = 16000


def small_graft(folder):
    """A random graft whose attention heads are 64 wide (vLLM's CPU attention takes no narrower heads)."""
    from train.building.folder import generation_config, make_processor, save_graft
    from train.building.tiny import tiny_config, tiny_tokenizer
    from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, audio_downsample=4, encode_padding=False)
    config.text_config.update(dict(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_key_value_heads=1,
                                   head_dim=64))  # fmt: skip
    config.text_config.rope_parameters["mrope_section"] = [8, 12, 12]
    config.use_vision_tower = False
    model = Qwen2AudioGraftForConditionalGeneration(config).eval()
    model.generation_config = generation_config(tokenizer)
    save_graft(model, make_processor(tokenizer, config), folder)
    return model


def clip(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from transformers import AutoProcessor
    from vllm import LLM

    folder = tmp_path_factory.mktemp("graft")
    model = small_graft(folder)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    llm = LLM(model=str(folder), trust_remote_code=True, dtype="float32", max_model_len=1024, seed=0,
              limit_mm_per_prompt={"audio": 2})  # fmt: skip
    return llm, model, processor


def test_greedy_tokens_equal_transformers(served):
    from vllm import SamplingParams

    llm, model, processor = served
    prompt = build_prompt(processor)
    clips = [clip(s, i) for i, s in enumerate((1.0, 2.7, 6.0))]
    outs = llm.generate([{"prompt": prompt, "multi_modal_data": {"audio": (c, RATE)}} for c in clips],
                        SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))  # fmt: skip
    for c, out in zip(clips, outs):
        inputs = processor(text=prompt, audio=c, sampling_rate=RATE)
        with torch.no_grad():
            reference = model.generate(**inputs, do_sample=False, max_new_tokens=8, min_new_tokens=8)
        assert list(out.outputs[0].token_ids) == reference[0, inputs["input_ids"].shape[1] :].tolist()
        assert len(out.prompt_token_ids) == inputs["input_ids"].shape[1]  # the same audio token count


def test_bad_prompts_get_clear_errors_and_the_engine_lives_on(served):
    from vllm import SamplingParams

    llm, _, processor = served
    greedy = SamplingParams(temperature=0.0, max_tokens=2)
    with pytest.raises(ValueError, match=r"^The text holds 0 <\|AUDIO\|> placeholders but 1 audio clips were given$"):
        llm.generate({"prompt": "Transcribe this audio.", "multi_modal_data": {"audio": (clip(1.0, 0), RATE)}}, greedy)
    with pytest.raises(ValueError, match=r"^The text holds 1 <\|AUDIO\|> placeholders but 2 audio clips were given$"):
        llm.generate({"prompt": build_prompt(processor), "multi_modal_data": {"audio": [(clip(1.0, 0), RATE)] * 2}}, greedy)
    with pytest.raises(ValueError, match="empty"):
        llm.generate({"prompt": build_prompt(processor), "multi_modal_data": {"audio": (np.zeros(0, np.float32), RATE)}},
                     greedy)  # fmt: skip
    with pytest.raises(ValueError, match="at most 30 s"):
        llm.generate({"prompt": build_prompt(processor), "multi_modal_data": {"audio": (clip(31.0, 0), RATE)}}, greedy)
    out = llm.generate({"prompt": build_prompt(processor), "multi_modal_data": {"audio": (clip(1.0, 0), RATE)}}, greedy)
    assert len(out[0].outputs[0].token_ids) == 2  # the engine still answers


def test_long_audio_is_cut_where_the_pipeline_cuts_it():
    pieces = [np.zeros(8000, np.float32), clip(12.0, 1), np.zeros(12000, np.float32), clip(15.0, 2),
              np.zeros(8000, np.float32)]  # fmt: skip
    audio = np.concatenate(pieces)
    segments = pause_segments(audio, RATE, 20, 0, 160)
    expected = [audio[a:b] for a, b in split_at_pauses(audio, 20.0)]
    assert len(segments) == 2 and all(np.array_equal(s, e) for s, e in zip(segments, expected))
    assert len(pause_segments(np.zeros(RATE, np.float32), RATE, 20, 0, 160)) == 1

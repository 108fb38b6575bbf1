"""The GPU benchmark's code path, run on the tiny graft on CPU (the 7B figures need a lent GPU)."""

import json
import math

import pytest

from bench import gpu


def lora_r64_parameters(config) -> int:
    """LoRA r=64 on the seven projections of every LLM layer, plus the projector (modules_to_save)."""
    text, r = config.text_config, 64
    head_dim = text.hidden_size // text.num_attention_heads
    q, kv = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    shapes = [(text.hidden_size, q), (text.hidden_size, kv), (text.hidden_size, kv), (q, text.hidden_size),
              (text.hidden_size, text.intermediate_size), (text.hidden_size, text.intermediate_size),
              (text.intermediate_size, text.hidden_size)]  # fmt: skip
    lora = text.num_hidden_layers * sum(r * (fan_in + fan_out) for fan_in, fan_out in shapes)
    d, k = config.audio_config.d_model, config.audio_downsample
    projector = d * k * text.hidden_size + 2 * text.hidden_size  # linear_1 (weight, bias) + norm
    return lora + projector


def test_gpu_bench_code_path_on_the_tiny_graft(tmp_path):
    from train.building.tiny import tiny_config, tiny_tokenizer

    out = tmp_path / "gpu.json"
    results = gpu.main(["--tiny", "--device", "cpu", "--batch_sizes", "1", "2", "--repeats", "1", "--seconds", "2",
                        "--parts", "rtfx", "split", "bf16_peak", "nf4", "qlora", "--nf4_lm_head", "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["qlora_step"] == results["qlora_step"]  # written as it went
    assert [r["batch"] for r in results["rtfx"]] == [1, 2]
    for run in results["rtfx"]:  # RTFx is audio seconds over wall seconds; p50_s is rounded to 1 ms (0.5 ms either way)
        audio = run["batch"] * 2
        assert audio / (run["p50_s"] + 0.0005) - 0.05 <= run["rtfx"] <= audio / (run["p50_s"] - 0.0005) + 0.05
    assert [s["batch"] for s in results["split"]] == [1, 2]
    # each part is a difference of two timings (a prefill minus the encoder in it): only their sum must be positive
    assert all(set(s) == {"batch", "encoder", "prefill", "decode"} and s["encoder"] + s["prefill"] + s["decode"] > 0
               for s in results["split"])  # fmt: skip
    # 4-bit LLM layers take less memory than the same model's bfloat16 ones; lm_head in 4-bit takes less again.
    assert results["nf4_lm_head_audio_only_b1"]["weights_bytes"] < results["nf4_audio_only_b1"]["weights_bytes"]
    step = results["qlora_step"]
    assert step["answer_tokens"] == 90 and step["clip_seconds"] == 30
    assert step["trainable_parameters"] == lora_r64_parameters(tiny_config(tiny_tokenizer()))
    assert step["lora_b_trained"] is True  # the optimizer steps moved LoRA off its zero start
    assert len(step["losses"]) == 4 and all(math.isfinite(x) for x in step["losses"])
    assert "compiled" not in results


def test_static_cache_with_compiled_decoding_gives_the_same_tokens(tmp_path):
    """The `compiled` part: static cache + torch.compile (fullgraph) of the decode step, on CPU."""
    results = gpu.main(["--tiny", "--device", "cpu", "--batch_sizes", "1", "--repeats", "1", "--seconds", "2",
                        "--parts", "compiled", "--out", str(tmp_path / "gpu.json")])  # fmt: skip
    (run,) = results["compiled"]
    assert run["batch"] == 1 and run["rtfx"] > 0
    assert run["same_tokens"] == 1.0


def test_real_frames_at_downsample_4(tmp_path):
    results = gpu.main(["--tiny", "--device", "cpu", "--batch_sizes", "2", "--repeats", "1", "--seconds", "3",
                        "--audio_downsample", "4", "--real_frames", "--parts", "rtfx", "split",
                        "--out", str(tmp_path / "gpu.json")])  # fmt: skip
    assert results["audio_downsample"] == 4 and results["encode_padding"] is False
    assert results["rtfx"][0]["batch"] == 2 and results["split"][0]["encoder"] > 0


def test_release_prompts_use_the_release_token_ids():
    from train.building.release import release_config

    prompts = gpu.Prompts(release_config(), tiny=False)
    inputs = prompts([gpu.speech(2.0)], "cpu", gpu.torch.bfloat16)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(151658) == 100  # 2 s at downsample 1
    assert ids.count(151657) == 1 and ids.count(151659) == 1 and ids[0] == 151644  # <|im_start|>
    assert max(ids) < 152064

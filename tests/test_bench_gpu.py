"""The GPU benchmark's code path, run on the tiny graft on CPU (the 7B figures need a lent GPU)."""

from bench import gpu


def test_gpu_bench_code_path_on_the_tiny_graft(tmp_path):
    out = tmp_path / "gpu.json"
    results = gpu.main(["--tiny", "--device", "cpu", "--batch-sizes", "1", "2", "--repeats", "1", "--seconds", "2",
                        "--out", str(out)])  # fmt: skip
    assert out.exists()
    assert [r["batch"] for r in results["rtfx"]] == [1, 2]
    assert all(r["rtfx"] > 0 for r in results["rtfx"])
    assert set(results["split_b1"]) == {"encoder", "prefill", "decode"}
    assert results["bf16_b1_peak_gib"] > 0 and results["nf4_audio_only_b1_peak_gib"] > 0
    assert results["qlora_step"]["p50_s"] > 0 and results["qlora_step"]["answer_tokens"] == 90


def test_release_prompts_use_the_release_token_ids():
    from train.build import release_config

    prompts = gpu.Prompts(release_config(), tiny=False)
    inputs = prompts([gpu.speech(2.0)], "cpu", gpu.torch.bfloat16)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(151658) == 100  # 2 s at downsample 1
    assert ids.count(151657) == 1 and ids.count(151659) == 1 and ids[0] == 151644  # <|im_start|>
    assert max(ids) < 152064

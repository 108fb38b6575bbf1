"""The GPU benchmark's code path, run on the tiny graft on CPU (the 7B figures need a lent GPU)."""

from bench import gpu


def test_gpu_bench_code_path_on_the_tiny_graft(tmp_path):
    out = tmp_path / "gpu.json"
    results = gpu.main(["--tiny", "--device", "cpu", "--batch-sizes", "1", "2", "--repeats", "1", "--seconds", "2",
                        "--parts", "rtfx", "split", "bf16_peak", "nf4", "qlora", "--nf4-lm-head", "--out", str(out)])  # fmt: skip
    assert out.exists()
    assert [r["batch"] for r in results["rtfx"]] == [1, 2]
    assert all(r["rtfx"] > 0 and r["cpu_preprocess_s"] > 0 for r in results["rtfx"])
    assert [s["batch"] for s in results["split"]] == [1, 2]
    assert all({"encoder", "prefill", "decode"} < set(s) for s in results["split"])
    assert results["bf16_b1"]["peak_gb"] > 0
    for key in ("nf4_audio_only_b1", "nf4_lm_head_audio_only_b1"):
        assert results[key]["peak_gb"] > 0 and results[key]["load_s"] > 0
    step = results["qlora_step"]
    assert step["p50_s"] > 0 and step["answer_tokens"] == 90 and step["trainable_parameters_m"] > 0
    assert "compiled" not in results


def test_static_cache_with_compiled_decoding_gives_the_same_tokens(tmp_path):
    """The `compiled` part: static cache + torch.compile (fullgraph) of the decode step, on CPU."""
    results = gpu.main(["--tiny", "--device", "cpu", "--batch-sizes", "1", "--repeats", "1", "--seconds", "2",
                        "--parts", "compiled", "--out", str(tmp_path / "gpu.json")])  # fmt: skip
    (run,) = results["compiled"]
    assert run["batch"] == 1 and run["rtfx"] > 0
    assert run["same_tokens"] == 1.0


def test_real_frames_at_downsample_4(tmp_path):
    results = gpu.main(["--tiny", "--device", "cpu", "--batch-sizes", "2", "--repeats", "1", "--seconds", "3",
                        "--audio-downsample", "4", "--real-frames", "--parts", "rtfx", "split",
                        "--out", str(tmp_path / "gpu.json")])  # fmt: skip
    assert results["audio_downsample"] == 4 and results["encode_padding"] is False
    assert results["rtfx"][0]["batch"] == 2 and results["split"][0]["encoder"] > 0


def test_release_prompts_use_the_release_token_ids():
    from train.build import release_config

    prompts = gpu.Prompts(release_config(), tiny=False)
    inputs = prompts([gpu.speech(2.0)], "cpu", gpu.torch.bfloat16)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(151658) == 100  # 2 s at downsample 1
    assert ids.count(151657) == 1 and ids.count(151659) == 1 and ids[0] == 151644  # <|im_start|>
    assert max(ids) < 152064

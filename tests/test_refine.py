"""train.refine: stage-2 pieces carried to a finer audio-token rate and another LoRA rank; train.average: pieces averaged."""

import json

import pytest
import torch
from safetensors.torch import load_file

from train import stage2_qlora
from train.average import average
from train.graft import Qwen2AudioGraftProjector
from train.loading import load_graft
from train.refine import fold_projector, refine
from train.tiny import build_tiny, save_graft, tiny_config, tiny_tokenizer
from train.toy_audio import make_toy_audio


@pytest.mark.parametrize("projector_type", ["linear", "mlp"])
def test_a_folded_projector_maps_a_token_as_the_coarse_one_maps_its_frames_repeated(projector_type):
    tokenizer = tiny_tokenizer()
    coarse = Qwen2AudioGraftProjector(tiny_config(tokenizer, 4, projector_type)).eval()
    fine = Qwen2AudioGraftProjector(tiny_config(tokenizer, 2, projector_type)).eval()
    width = coarse.linear_1.in_features // 4
    state = coarse.state_dict()
    state["linear_1.weight"] = fold_projector(state["linear_1.weight"], width, 2)
    fine.load_state_dict(state)
    frames = torch.randn(3, 6, width)  # (windows, frames, width): 3 fine tokens each
    repeated = frames.reshape(3, 3, 1, 2, width).expand(-1, -1, 2, -1, -1).reshape(3, 12, width)  # [a b a b] per token
    with torch.no_grad():
        torch.testing.assert_close(fine(frames), coarse(repeated), rtol=1e-5, atol=1e-5)


def test_fold_refuses_a_rate_that_does_not_divide():
    with pytest.raises(ValueError) as info:
        fold_projector(torch.zeros(4, 8 * 3), 3, 3)
    assert str(info.value) == "the new audio_downsample (3) must divide the pieces' (8)"
    with pytest.raises(ValueError) as info:
        fold_projector(torch.zeros(4, 10), 3, 1)
    assert str(info.value) == "the projector takes 10 inputs, not a multiple of the encoder width 3"


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """One stage-2 step on a tiny graft at audio_downsample 2 (LoRA r=2), and the same graft at 1."""
    folder = tmp_path_factory.mktemp("refine")
    coarse, _ = build_tiny(folder / "k2", audio_downsample=2)
    fine, processor = build_tiny(folder / "k1", audio_downsample=1)
    # the same LLM and encoder in both: only the projector differs
    shared = {k: v for k, v in coarse.state_dict().items() if ".audio_projector." not in k}
    assert not fine.load_state_dict(shared, strict=False).unexpected_keys
    save_graft(fine, processor, folder / "k1")
    manifests = make_toy_audio(folder / "audio", train=8, devtest=4)
    stage2_qlora.main([
        "--model_path", str(folder / "k2"), "--train_data", str(manifests["train"]), "--output_dir", str(folder / "s2"),
        "--max_steps", "1", "--logging_steps", "1", "--per_device_train_batch_size", "2", "--learning_rate", "0.01", "--lora_r", "2",
        "--lora_alpha", "4", "--load_in_4bit", "false", "--report_to", "none", "--use_cpu", "true",
        "--eval_strategy", "no", "--save_strategy", "no", "--precision", "float32",
    ])  # fmt: skip
    return folder


def test_refined_pieces_load_on_the_finer_graft_and_leave_text_unchanged(pieces, tmp_path):
    config = refine(pieces / "s2", pieces / "k1", tmp_path / "refined", lora_r=5)
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (5, 10, str(pieces / "k1"))
    assert config["inference_mode"] is json.loads((pieces / "s2" / "adapter_config.json").read_text())["inference_mode"] is True
    record = json.loads((tmp_path / "refined" / "refine.json").read_text())
    assert (record["from"], record["to"]) == ({"audio_downsample": 2, "lora_r": 2, "lora_alpha": 4},
                                              {"audio_downsample": 1, "lora_r": 5, "lora_alpha": 10})  # fmt: skip
    before, after = load_file(str(pieces / "s2" / "adapter_model.safetensors")), load_file(
        str(tmp_path / "refined" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    for name, tensor in after.items():
        if ".lora_B." in name:
            assert tensor.shape[1] == 5 and torch.equal(tensor[:, :2], before[name]) and not tensor[:, 2:].any()
        elif ".lora_A." in name:
            assert tensor.shape[0] == 5 and torch.equal(tensor[:2], before[name]) and tensor[2:].abs().max() > 0
    coarse, processor = load_graft(pieces / "k2", adapter=pieces / "s2")
    fine, _ = load_graft(pieces / "k1", adapter=tmp_path / "refined")
    assert fine.peft_config["default"].r == 5
    text = processor.tokenizer(["hello there"], return_tensors="pt")
    with torch.no_grad():  # no audio: the grown ranks add nothing (B is zero), so the LLM is unchanged
        torch.testing.assert_close(fine.eval()(**text).logits, coarse.eval()(**text).logits)


def test_refine_refuses_a_rank_below_1(pieces, tmp_path):
    with pytest.raises(ValueError) as info:
        refine(pieces / "s2", pieces / "k1", tmp_path / "refined", lora_r=0)
    assert str(info.value) == "lora_r must be 1 or more, got 0"
    assert not (tmp_path / "refined").exists()
    assert json.loads((pieces / "s2" / "adapter_config.json").read_text())["r"] == 2


def test_a_smaller_rank_keeps_each_update_s_best_approximation(pieces, tmp_path):
    before = load_file(str(pieces / "s2" / "adapter_model.safetensors"))
    config = refine(pieces / "s2", pieces / "k2", tmp_path / "r1", lora_r=1)
    assert (config["r"], config["lora_alpha"]) == (1, 2)  # alpha / r stays 2
    after = load_file(str(tmp_path / "r1" / "adapter_model.safetensors"))
    modules = [name for name in before if ".lora_A." in name]
    assert modules and after.keys() == before.keys()
    for name in modules:
        b_name = name.replace(".lora_A.", ".lora_B.")
        assert after[name].shape == (1, before[name].shape[1]) and after[b_name].shape == (before[b_name].shape[0], 1)
        u, s, vh = torch.linalg.svd(before[b_name] @ before[name])
        best = s[0] * torch.outer(u[:, 0], vh[0])
        torch.testing.assert_close(after[b_name] @ after[name], best, rtol=1e-4, atol=1e-6)
    # grown to 5 and cut back to 2: the same updates, the same model
    refine(pieces / "s2", pieces / "k2", tmp_path / "r5", lora_r=5)
    refine(tmp_path / "r5", pieces / "k2", tmp_path / "r2", lora_r=2)
    back = load_file(str(tmp_path / "r2" / "adapter_model.safetensors"))
    for name in modules:
        b_name = name.replace(".lora_A.", ".lora_B.")
        torch.testing.assert_close(back[b_name] @ back[name], before[b_name] @ before[name], rtol=1e-4, atol=1e-6)
    original, processor = load_graft(pieces / "k2", adapter=pieces / "s2")
    cut, _ = load_graft(pieces / "k2", adapter=tmp_path / "r2")
    text = processor.tokenizer(["hello there"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(cut.eval()(**text).logits, original.eval()(**text).logits, rtol=1e-4, atol=1e-4)


def test_refine_refuses_pieces_without_the_projector(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "pieces").mkdir()
    (tmp_path / "base").mkdir()
    save_file({"base_model.model.x.lora_A.weight": torch.ones(2, 4)}, str(tmp_path / "pieces" / "adapter_model.safetensors"))
    (tmp_path / "pieces" / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    (tmp_path / "base" / "config.json").write_text(json.dumps({"audio_downsample": 1, "audio_config": {"d_model": 3}}))
    with pytest.raises(ValueError) as info:
        refine(tmp_path / "pieces", tmp_path / "base", tmp_path / "out")
    assert str(info.value) == (f"{tmp_path / 'pieces' / 'adapter_model.safetensors'} holds no "
                               "audio_projector.linear_1.weight: not stage-2 pieces with the projector")
    assert not (tmp_path / "out").exists()


def stage2_config(path: str):
    """(stage, recipe, data, training) arguments as stage 2 parses the config file at `path`."""
    from transformers import TrainingArguments

    from train.args import DataArguments, RecipeArguments, parse_config

    types = (stage2_qlora.Stage2Arguments, RecipeArguments, DataArguments, TrainingArguments)
    return parse_config(types, ["--config", path])


def test_the_refined_mini_config_continues_the_recipe_at_the_refined_graft():
    stage, recipe, data, training = stage2_config("train/configs/mini_stage2_refined.yaml")
    base_stage, base_recipe, base_data, base_training = stage2_config("train/configs/mini_stage2.yaml")
    assert (stage.model_path, stage.init_adapter) == ("build/mini-base-k4-linear-real", "build/refined/k4-r11")
    assert (training.lr_scheduler_type, training.max_steps, training.seed) == ("linear", 600, 1)
    # the rest is the recipe's own
    assert recipe == base_recipe and data == base_data
    assert (training.learning_rate, training.per_device_train_batch_size, training.warmup_steps) == (
        base_training.learning_rate, base_training.per_device_train_batch_size, base_training.warmup_steps)


def test_stage2_says_where_its_pieces_start():
    from types import SimpleNamespace

    start = stage2_qlora.start_of
    assert start(SimpleNamespace(init_adapter="mini/trained/stage2", projector_path=None)) == \
        "LoRA and projector from mini/trained/stage2"
    assert start(SimpleNamespace(init_adapter=None, projector_path="build/s1")) == "fresh LoRA, projector from build/s1"
    assert start(SimpleNamespace(init_adapter=None, projector_path=None)) == "fresh LoRA and projector (joint training)"


def test_the_k2_mini_config_is_the_refined_one_at_audio_downsample_2():
    stage, recipe, data, training = stage2_config("train/configs/mini_stage2_k2.yaml")
    k4_stage, k4_recipe, k4_data, k4_training = stage2_config("train/configs/mini_stage2_refined.yaml")
    assert (stage.model_path, stage.init_adapter) == ("build/mini-base-k2-linear-real", "build/refined/k2-r13")
    assert (training.output_dir, training.seed) == ("build/mini-train/k2-r13", 2)
    assert recipe == k4_recipe and data == k4_data
    assert (training.lr_scheduler_type, training.max_steps, training.learning_rate, training.warmup_steps) == (
        k4_training.lr_scheduler_type, k4_training.max_steps, k4_training.learning_rate, k4_training.warmup_steps)


def refined_pair(pieces, folder):
    """Two sets of pieces refined to r=4 from the same ones, with other A rows for the new ranks."""
    for name, seed in (("a", 0), ("b", 1)):
        refine(pieces / "s2", pieces / "k1", folder / name, lora_r=4, seed=seed)


def test_averaged_pieces_are_the_mean_of_each_tensor_and_load(pieces, tmp_path):
    refined_pair(pieces, tmp_path)
    average([tmp_path / "a", tmp_path / "b"], tmp_path / "mean", command="python -m train.average ...")
    a, b = (load_file(str(tmp_path / x / "adapter_model.safetensors")) for x in ("a", "b"))
    mean = load_file(str(tmp_path / "mean" / "adapter_model.safetensors"))
    assert mean.keys() == a.keys()
    assert any(not torch.equal(a[name], b[name]) for name in a)
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (a[name].float() + b[name].float()) / 2, rtol=0, atol=0)
    record = json.loads((tmp_path / "mean" / "average.json").read_text())
    assert record["adapters"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert record["command"] == "python -m train.average ..."
    coarse, processor = load_graft(pieces / "k2", adapter=pieces / "s2")
    averaged, _ = load_graft(pieces / "k1", adapter=tmp_path / "mean")
    text = processor.tokenizer(["hello there"], return_tensors="pt")
    with torch.no_grad():  # both inputs' new ranks have B zero, so the mean's do too: text unchanged
        torch.testing.assert_close(averaged.eval()(**text).logits, coarse.eval()(**text).logits)


def test_an_input_listed_twice_weighs_twice(pieces, tmp_path):
    """docs/training.md: the kept mean listed twice beside a new run gives three phases' ends equal weights."""
    refined_pair(pieces, tmp_path)
    average([tmp_path / "a", tmp_path / "a", tmp_path / "b"], tmp_path / "mean")
    a, b, mean = (load_file(str(tmp_path / x / "adapter_model.safetensors")) for x in ("a", "b", "mean"))
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (2 * a[name].float() + b[name].float()) / 3, rtol=0, atol=0)


def test_average_refuses_pieces_of_another_rank_and_writes_nothing(pieces, tmp_path):
    refine(pieces / "s2", pieces / "k1", tmp_path / "r4", lora_r=4)
    refine(pieces / "s2", pieces / "k1", tmp_path / "r3", lora_r=3)
    with pytest.raises(ValueError) as info:
        average([tmp_path / "r4", tmp_path / "r3"], tmp_path / "mean")
    assert str(info.value) == f"{tmp_path / 'r3'} has r=3, {tmp_path / 'r4'} 4"
    with pytest.raises(ValueError) as info:
        average([tmp_path / "r4"], tmp_path / "mean")
    assert str(info.value) == "averaging needs at least two adapters, got 1"
    assert not (tmp_path / "mean").exists()

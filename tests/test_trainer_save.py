"""What the stages' Trainer saves and how it builds its optimizer (train.stages.common.TrainedOnlyTrainer),
and the EMA of the trained weights it can keep (train.stages.ema.EMACallback)."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerState, TrainingArguments

from train.weights.loading import load_graft
from train.stage1_align import freeze_all_but_projector
from train.stages.common import TrainedOnlyTrainer, parameter_groups, save_trained
from train.stages.ema import EMACallback
from train.building.tiny import build_tiny


@pytest.fixture(scope="module")
def stage1_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graft")
    build_tiny(folder)
    model, _ = load_graft(folder)
    return model, freeze_all_but_projector(model)


def _trainer(model, tmp_path, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", learning_rate=1e-4,
                             weight_decay=0.1)  # fmt: skip
    return TrainedOnlyTrainer(model=model, args=args, **kwargs)


def test_save_writes_the_state_dict_it_is_given(stage1_model, tmp_path):
    """Under FSDP and DeepSpeed the state dict is gathered from shards (the parameters themselves
    are shards there): that is what must be written, not `named_parameters()`."""
    model, trained = stage1_model
    gathered = {name: torch.full_like(p, 7.0) for name, p in model.state_dict().items()}
    save_trained(model, gathered, str(tmp_path / "given"))
    saved = load_file(str(tmp_path / "given" / "model.safetensors"))
    assert sorted(saved) == sorted(trained)
    assert all(torch.equal(saved[name], gathered[name]) for name in trained)


def test_save_model_gathers_the_trained_weights_through_the_accelerator(stage1_model, tmp_path):
    model, trained = stage1_model
    trainer = _trainer(model, tmp_path)
    trainer.save_model(str(tmp_path / "own"))
    assert sorted(p.name for p in (tmp_path / "own").iterdir()) == ["model.safetensors"]
    saved = load_file(str(tmp_path / "own" / "model.safetensors"))
    assert sorted(saved) == sorted(trained)
    assert all(torch.equal(saved[name], model.get_parameter(name).detach()) for name in trained)


def test_save_refuses_a_state_dict_missing_trained_weights(stage1_model, tmp_path):
    model, trained = stage1_model
    partial = {k: v for k, v in model.state_dict().items() if k != trained[0]}
    with pytest.raises(ValueError) as info:
        save_trained(model, partial, str(tmp_path / "partial"))
    assert str(info.value) == f"The state dict to save lacks trained weights: {[trained[0]]}"


def test_projector_learning_rate_gets_its_own_groups(stage1_model, tmp_path):
    model, trained = stage1_model
    for name, parameter in model.named_parameters():  # an LLM weight trains too, as LoRA would
        parameter.requires_grad = name in trained or name == "model.language_model.layers.0.mlp.up_proj.weight"
    trainer = _trainer(model, tmp_path, projector_learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    groups = [(g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]
    # LLM weight with decay; projector linear_1.weight with decay; projector bias and norm gain without.
    assert groups == [(1e-4, 0.1, 1), (1e-3, 0.1, 1), (1e-3, 0.0, 2)]
    names = trainer.get_decay_parameter_names(model)
    assert parameter_groups(model, names, 0.0, 1e-4, 1e-3)[0]["params"][0] is model.get_parameter(
        "model.language_model.layers.0.mlp.up_proj.weight")  # fmt: skip
    freeze_all_but_projector(model)


def test_ema_copies_only_the_trained_weights():
    """At 7B the frozen LLM is most of the model: the average holds the trainable parameters alone."""
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 2))
    model[0].requires_grad_(False)
    ema = EMACallback(model, 0.5)
    assert [tuple(p.shape) for p in ema.averaged.parameters()] == [(2, 256), (2,)]
    start = {name: tensor.clone() for name, tensor in ema.average().items()}
    assert ema.average()["1.weight"].data_ptr() != model[1].weight.data_ptr()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    ema.on_step_end(None, TrainerState(global_step=1), None)
    # step 1: the decay warms up to min(0.5, (1 + 1) / (10 + 1))
    torch.testing.assert_close(ema.average()["1.weight"], start["1.weight"] + 9 / 11)
    torch.testing.assert_close(ema.average()["1.bias"], model[1].bias.detach())

"""Precision of the stages (train.weights.precision) and batches grouped by length."""

import pytest
import torch
from torch import nn
from transformers import TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from train.weights import precision
from train.stages.data import approximate_tokens
from train.stages.common import TrainedOnlyTrainer


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    assert precision.cpu_has_bf16(cpuinfo) is False
    cpuinfo.write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n")
    assert precision.cpu_has_bf16(cpuinfo) is True
    cpuinfo.write_text("flags : amx_bf16 amx_tile\n")
    assert precision.cpu_has_bf16(cpuinfo) is True
    assert precision.cpu_has_bf16(tmp_path / "missing") is False


def test_the_hardware_record_names_the_cpu_flags_a_step_depends_on(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=None: {"fpu", "amx_tile", "avx2", "avx512_bf16", "avx512f", "amx_bf16"})
    assert precision.hardware()["cpu_flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=None: {"fpu", "avx2"})
    assert precision.hardware()["cpu_flags"] == ["avx2"]


@pytest.mark.parametrize("has_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_the_hardware_and_switches_autocast(monkeypatch, tmp_path, has_bf16, expected):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert precision.apply_precision(args, "auto") == expected
    assert args.bf16 is has_bf16 and args.mixed_precision == ("bf16" if has_bf16 else "no")
    assert precision.apply_precision(args, "float32") == torch.float32 and args.bf16 is False
    with pytest.raises(ValueError) as info:
        precision.resolve_precision("fp8")
    assert str(info.value) == "precision must be one of ('auto', 'bfloat16', 'float32'), got 'fp8'"


def test_trained_weights_are_float32_frozen_ones_keep_their_dtype():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).to(torch.bfloat16)
    model[0].requires_grad_(False)
    assert precision.keep_trainable_float32(model) == ["1.weight", "1.bias"]
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32


class _Lengths(torch.utils.data.Dataset):
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        raise AssertionError("the sampler must not read items to find their length")


def test_group_by_length_batches_clips_of_similar_length(tmp_path):
    # 800 clips: Trainer's sampler sorts "megabatches" of 50 batches by length (fewer on tiny sets).
    lengths = [approximate_tokens(16000 * s, "x" * 40) for s in [1, 30, 2, 29, 3, 28, 4, 27] * 100]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=4,
                             train_sampling_strategy="group_by_length")  # fmt: skip
    trainer = TrainedOnlyTrainer(model=nn.Linear(1, 1), args=args, train_dataset=_Lengths(lengths))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    order = list(sampler)
    assert sorted(order) == list(range(800))
    batches = [[lengths[i] for i in order[k : k + 4]] for k in range(0, 800, 4)]
    # Random batches of 4 would mix short and long clips 7 times in 8; sorted megabatches only at
    # their one boundary batch (4 megabatches of 200 clips here).
    mixed = [b for b in batches if max(b) - min(b) >= 100]
    assert len(mixed) <= 4
    assert approximate_tokens(16000 * 4, "y" * 20) == 50 + 5

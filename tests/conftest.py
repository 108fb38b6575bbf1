"""Shared fixtures: a tiny random graft built in code (nothing is downloaded)."""

import numpy as np
import pytest
import torch

from train.building.tiny import build_tiny


@pytest.fixture(scope="session")
def _tiny_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-graft")
    model, processor = build_tiny(folder)
    return folder, model.eval(), processor


@pytest.fixture(scope="session")
def tiny_dir(_tiny_build):
    """The saved tiny graft folder: a complete remote-code model repo."""
    return _tiny_build[0]


@pytest.fixture(scope="session")
def tiny(_tiny_build):
    """(model, processor) of the tiny graft, in process, as they were saved."""
    return _tiny_build[1], _tiny_build[2]


def make_clip(seconds: float, seed: int = 0, sampling_rate: int = 16000) -> np.ndarray:
    """A deterministic noise-and-tone clip of the given length."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    return (0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.randn(t.size)).astype(np.float32)


def non_text_tokens(model, processor) -> list[int]:
    """Token ids that decode to no text: the tokenizer's special tokens and the embedding rows past
    it (the random tiny graft would often pick them: its 512-row vocabulary holds 266 tokens)."""
    tokenizer = processor.tokenizer
    return sorted(set(tokenizer.added_tokens_decoder) | set(range(len(tokenizer), model.config.text_config.vocab_size)))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)

"""The long-form set: clips trimmed and joined with written-down boundaries, and the timestamp error."""

import numpy as np
import pytest

from mini import longform


def test_join_writes_down_every_sentence_where_it_is():
    rng = np.random.RandomState(0)
    clips = [{"samples": np.concatenate([np.zeros(800), 0.3 * rng.randn(16000 * (i + 1)), np.zeros(1600)]).astype(np.float32),
              "text": f"Sentence {i}.", "voice": "flite-slt"} for i in range(12)]  # fmt: skip
    samples, sentences = longform.join(clips, seed=3)
    assert [s["text"] for s in sentences] == [c["text"] for c in clips]
    assert sentences[0]["start"] == 0.5 and sentences[0]["pause_before"] == 0.5
    pauses = [s["pause_before"] for s in sentences[1:]]
    assert 0.0 in pauses and all(p == 0.0 or 0.2 <= p <= 1.5 for p in pauses)  # some back to back
    for index, sentence in enumerate(sentences):
        assert sentence["end"] - sentence["start"] == pytest.approx(index + 1, abs=1e-3)  # trimmed to the sound
        inside = samples[int(sentence["start"] * 16000) : int(sentence["end"] * 16000)]
        assert np.abs(inside[:10]).max() > 0.01
        if index:
            gap = samples[int(sentences[index - 1]["end"] * 16000) + 1 : int(sentence["start"] * 16000) - 1]
            assert gap.size == 0 or np.abs(gap).max() == 0.0
    assert len(samples) / 16000 == pytest.approx(sentences[-1]["end"] + 0.5, abs=1e-3)
    assert longform.join(clips, seed=3)[1] == sentences


def test_timestamp_error_counts_only_starts_after_a_pause():
    sentences = [{"start": 0.5, "pause_before": 0.5}, {"start": 3.0, "pause_before": 0.0},
                 {"start": 6.0, "pause_before": 0.8}, {"start": 9.0, "pause_before": 0.25}]  # fmt: skip
    chunks = [{"timestamp": (0.45, 2.9)}, {"timestamp": (6.2, 8.0)}]
    assert longform.timestamp_errors(sentences, chunks) == pytest.approx([0.05, 0.2])
    assert longform.timestamp_errors(sentences, []) == [float("inf"), float("inf")]

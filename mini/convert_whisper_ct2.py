"""Read a CTranslate2 Whisper ``model.bin`` (format v6) and rebuild a transformers Whisper model.

CTranslate2 stores every spec variable (weights and scalar attributes alike) in one flat
binary file; the layout is its ``ModelSpec._serialize``: a u32 format version, the spec name,
a u32 spec revision, the variables, then an alias table (names that share another's data).
Strings are a u16 length that counts a trailing NUL, then the bytes, then that NUL.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import torch

CT2_FORMAT_VERSION = 6

# CTranslate2 DataType ids as written in model.bin.
CT2_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


class _Cursor:
    """Little-endian reader over a byte buffer that fails loudly on truncation."""

    def __init__(self, data: bytearray):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError(
                f"truncated model.bin: expected {n} more bytes at offset {self.pos}, "
                f"got {len(self.data) - self.pos}"
            )
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self.take(length))
        if length == 0 or raw[-1] != 0:
            raise ValueError(f"bad string at offset {self.pos - length}: expected a NUL-terminated string, got {raw!r}")
        return raw[:-1].decode("utf-8")


def _read_variable(cur: _Cursor) -> tuple[str, torch.Tensor]:
    name = cur.string()
    (rank,) = cur.unpack("B")
    shape = cur.unpack("I" * rank) if rank else ()
    dtype_id, num_bytes = cur.unpack("BI")
    if dtype_id not in CT2_DTYPES:
        raise ValueError(f"variable {name}: expected a dtype id in {sorted(CT2_DTYPES)}, got {dtype_id}")
    dtype = CT2_DTYPES[dtype_id]
    numel = 1
    for dim in shape:
        numel *= dim
    expected = numel * torch.empty((), dtype=dtype).element_size()
    if num_bytes != expected:
        raise ValueError(f"variable {name}: expected {expected} bytes for shape {tuple(shape)} {dtype}, got {num_bytes}")
    raw = cur.take(num_bytes)
    # Copy out of the shared buffer so each tensor owns its memory (the buffer is freed after reading).
    tensor = torch.frombuffer(bytearray(raw), dtype=dtype) if num_bytes else torch.empty(0, dtype=dtype)
    return name, tensor.reshape(shape)


def read_ct2_model(path: str | Path) -> tuple[str, int, dict[str, torch.Tensor]]:
    """Return (spec name, spec revision, {variable name: tensor}) with aliases resolved."""
    cur = _Cursor(bytearray(Path(path).read_bytes()))
    (version,) = cur.unpack("I")
    if version != CT2_FORMAT_VERSION:
        raise ValueError(f"{path}: expected CTranslate2 model.bin format {CT2_FORMAT_VERSION}, got {version}")
    spec_name = cur.string()
    revision, count = cur.unpack("II")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name, tensor = _read_variable(cur)
        variables[name] = tensor
    (alias_count,) = cur.unpack("I")
    for _ in range(alias_count):
        alias, target = cur.string(), cur.string()
        if target not in variables:
            raise ValueError(f"alias {alias}: expected a target among the variables, got {target!r}")
        variables[alias] = variables[target]
    if cur.pos != len(cur.data):
        raise ValueError(f"{path}: expected end of file at offset {cur.pos}, got {len(cur.data) - cur.pos} extra bytes")
    return spec_name, revision, variables


# ---------------------------------------------------------------------------
# CTranslate2 Whisper spec -> transformers WhisperForConditionalGeneration
# ---------------------------------------------------------------------------

# CTranslate2 `common_spec.Activation` id of exact (erf) GELU, which Whisper uses.
CT2_ACTIVATION_GELU = 3


def _take(variables: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in variables:
        raise ValueError(f"model.bin: expected variable {name!r}, got none (is this a Whisper spec?)")
    return variables[name]


def _split_fused(weight: torch.Tensor, bias: torch.Tensor, parts: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Undo CTranslate2's row-wise fusion of several projections into one linear layer."""
    if weight.shape[0] % parts:
        raise ValueError(f"fused weight rows: expected a multiple of {parts}, got {weight.shape[0]}")
    # (parts * d_out, d_in) -> parts x (d_out, d_in); bias (parts * d_out,) -> parts x (d_out,)
    return list(zip(weight.chunk(parts, dim=0), bias.chunk(parts, dim=0)))


def _map_qkv(v: dict, ct2: str, hf: str, names: tuple[str, ...], fused: str) -> dict[str, torch.Tensor]:
    """Map one fused projection (q/k/v or k/v) onto separate HF projections.

    Whisper's k_proj has no bias; CTranslate2 stores zeros there when fusing, so that slice
    must be zero or the model is not the Whisper we think it is.
    """
    pieces = _split_fused(_take(v, f"{ct2}/{fused}/weight"), _take(v, f"{ct2}/{fused}/bias"), len(names))
    out = {}
    for proj, (weight, bias) in zip(names, pieces):
        out[f"{hf}.{proj}.weight"] = weight
        if proj == "k_proj":
            if bias.abs().max().item() != 0:
                raise ValueError(f"{ct2}: expected an all-zero key bias, got max |b| = {bias.abs().max().item()}")
        else:
            out[f"{hf}.{proj}.bias"] = bias
    return out


def _map_linear(v: dict, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": _take(v, f"{ct2}/weight"), f"{hf}.bias": _take(v, f"{ct2}/bias")}


def _map_norm(v: dict, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": _take(v, f"{ct2}/gamma"), f"{hf}.bias": _take(v, f"{ct2}/beta")}


def _map_layer(v: dict, side: str, i: int) -> dict[str, torch.Tensor]:
    ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    out = _map_qkv(v, f"{ct2}/self_attention", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"), "linear_0")
    out |= _map_linear(v, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
    out |= _map_norm(v, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
    if side == "decoder":
        # Cross-attention: queries from the decoder (linear_0), fused keys/values from the encoder (linear_1).
        out |= _map_linear(v, f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
        out |= _map_qkv(v, f"{ct2}/attention", f"{hf}.encoder_attn", ("k_proj", "v_proj"), "linear_1")
        out |= _map_linear(v, f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        out |= _map_norm(v, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    out |= _map_linear(v, f"{ct2}/ffn/linear_0", f"{hf}.fc1")
    out |= _map_linear(v, f"{ct2}/ffn/linear_1", f"{hf}.fc2")
    out |= _map_norm(v, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
    return out


def count_layers(variables: dict[str, torch.Tensor], side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def ct2_to_hf_state_dict(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename/split CTranslate2 Whisper variables into a WhisperForConditionalGeneration state dict."""
    v = variables
    sd = _map_linear(v, "encoder/conv1", "model.encoder.conv1") | _map_linear(v, "encoder/conv2", "model.encoder.conv2")
    sd["model.encoder.embed_positions.weight"] = _take(v, "encoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = _take(v, "decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = _take(v, "decoder/position_encodings/encodings")
    for side in ("encoder", "decoder"):
        for i in range(count_layers(v, side)):
            sd |= _map_layer(v, side, i)
        sd |= _map_norm(v, f"{side}/layer_norm", f"model.{side}.layer_norm")
    projection = v.get("decoder/projection/weight")
    if projection is not None and not torch.equal(projection, sd["model.decoder.embed_tokens.weight"]):
        # The HF Whisper head is tied to the token embedding; an untied CT2 head cannot be represented.
        raise ValueError("decoder/projection/weight: expected it to equal the token embedding (tied), got different values")
    return sd


def _check_spec_flags(variables: dict[str, torch.Tensor]) -> None:
    """Reject CT2 options that the stock HF Whisper architecture does not implement."""
    expected = {
        "decoder/activation": CT2_ACTIVATION_GELU,
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
    }
    for name, want in expected.items():
        if name in variables and int(variables[name].item()) != want:
            raise ValueError(f"{name}: expected {want} for a Whisper model, got {int(variables[name].item())}")


# ---------------------------------------------------------------------------
# Tokenizer, configs, processor
# ---------------------------------------------------------------------------

# Whisper multilingual special tokens after <|endoftext|>, in id order, with the language
# tokens between <|startoftranscript|> and <|translate|> (openai/whisper tokenizer.py).
TASK_TOKENS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>")
TIME_PRECISION = 0.02  # seconds per timestamp token


def _timestamp_token(i: int) -> str:
    return f"<|{i * TIME_PRECISION:.2f}|>"


def build_tokenizer(tokenizer_json: Path, normalizer_json: Path | None, vocab_size: int):
    """Load the HF tokenizer.json shipped with the CT2 model and complete it to the model's vocab.

    The shipped file registers the 107 control tokens as added tokens but neither as
    transformers "extra special tokens" (WhisperTokenizer locates the first timestamp id as
    ``all_special_ids[-1] + 1``) nor the 1501 timestamp tokens that fill ids 50364..51864.
    """
    from transformers import AddedToken, WhisperTokenizer

    added = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"]) if t["special"]]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(tokenizer_json, Path(tmp) / "tokenizer.json")
        if normalizer_json is not None:
            # WhisperTokenizer.normalize() needs the British->American spelling table from this file.
            shutil.copy(normalizer_json, Path(tmp) / "normalizer.json")
        tok = WhisperTokenizer.from_pretrained(tmp, extra_special_tokens=specials, model_max_length=448)
    n_timestamps = vocab_size - len(tok)
    if n_timestamps != 1501:
        raise ValueError(f"timestamp tokens: expected 1501 ids after {len(tok)}, got {n_timestamps} (vocab {vocab_size})")
    # Timestamps stay non-special so that all_special_ids still ends at <|notimestamps|>.
    stamps = [AddedToken(_timestamp_token(i), lstrip=False, rstrip=False, normalized=False, special=False)
              for i in range(n_timestamps)]
    tok.add_tokens(stamps)
    return tok


def check_tokenizer_vocabulary(tok, vocabulary_txt: Path) -> None:
    """CTranslate2 decodes with vocabulary.txt (one token string per id): ours must agree on every id."""
    lines = Path(vocabulary_txt).read_text(encoding="utf-8").splitlines()
    if len(lines) != len(tok):
        raise ValueError(f"vocabulary.txt: expected {len(tok)} tokens, got {len(lines)}")
    ours = tok.convert_ids_to_tokens(list(range(len(lines))))
    bad = [i for i, (a, b) in enumerate(zip(ours, lines)) if a != b]
    if bad:
        i = bad[0]
        raise ValueError(f"token {i}: expected {lines[i]!r} (vocabulary.txt), got {ours[i]!r}; {len(bad)} mismatches")


def special_token_ids(tok, lang_ids: list[int]) -> dict:
    """Ids of Whisper's control tokens, checked against the multilingual layout."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")}
    ids |= {t: tok.convert_tokens_to_ids(t) for t in TASK_TOKENS}
    langs = {f"<|{c}|>": tok.convert_tokens_to_ids(f"<|{c}|>") for c in LANGUAGES}
    lang_to_id = {t: i for t, i in langs.items() if i is not None and i != tok.unk_token_id}
    if sorted(lang_to_id.values()) != sorted(lang_ids):
        raise ValueError(f"language ids: expected the CT2 config's {len(lang_ids)} ids, got {sorted(lang_to_id.values())[:5]}...")
    sot = ids["<|startoftranscript|>"]
    expected_translate = sot + 1 + len(lang_to_id)
    if ids["<|translate|>"] != expected_translate or ids["<|notimestamps|>"] != expected_translate + 5:
        raise ValueError(f"<|translate|>/<|notimestamps|>: expected {expected_translate}/{expected_translate + 5}, "
                         f"got {ids['<|translate|>']}/{ids['<|notimestamps|>']}")
    if ids["<|endoftext|>"] != sot - 1:
        raise ValueError(f"<|endoftext|>: expected {sot - 1}, got {ids['<|endoftext|>']}")
    return {"ids": ids, "lang_to_id": lang_to_id}


def whisper_config(variables: dict[str, torch.Tensor], ids: dict, ct2_config: dict):
    from transformers import WhisperConfig

    embed = _take(variables, "decoder/embeddings/weight")  # (vocab, d_model)
    eot = ids["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=embed.shape[0],
        d_model=embed.shape[1],
        num_mel_bins=_take(variables, "encoder/conv1/weight").shape[1],  # (d_model, n_mels, 3)
        encoder_layers=count_layers(variables, "encoder"),
        decoder_layers=count_layers(variables, "decoder"),
        encoder_attention_heads=int(_take(variables, "encoder/num_heads").item()),
        decoder_attention_heads=int(_take(variables, "decoder/num_heads").item()),
        encoder_ffn_dim=_take(variables, "encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=_take(variables, "decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=_take(variables, "encoder/position_encodings/encodings").shape[0],
        max_target_positions=_take(variables, "decoder/position_encodings/encodings").shape[0],
        activation_function="gelu",
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        tie_word_embeddings=True,
    )


def whisper_generation_config(special: dict, ct2_config: dict, max_length: int):
    """What WhisperGenerationMixin.generate reads for language/task prompting and suppression."""
    from transformers import GenerationConfig

    ids = special["ids"]
    eot = ids["<|endoftext|>"]
    return GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=max_length,
        is_multilingual=True,
        lang_to_id=special["lang_to_id"],
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        # 1.0 s: openai's max_initial_timestamp default, in 0.02 s timestamp steps.
        max_initial_timestamp_index=50,
        return_timestamps=False,
        # Without a task (and without the deprecated forced_decoder_ids) generate() would prompt
        # <|sot|><|lang|><|notimestamps|> with no task token, which derails decoding; openai's default is transcribe.
        task="transcribe",
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
    )


def convert_ct2_whisper(src_dir: Path, out_dir: Path, normalizer_json: Path | None = None) -> Path:
    """Write a WhisperForConditionalGeneration + WhisperProcessor folder from a CT2 Whisper package dir.

    src_dir must hold model.bin, config.json, tokenizer.json and vocabulary.txt (faster-whisper layout).
    Weights are saved in float32 (the CT2 file is float16; upcasting is exact) so that a plain
    from_pretrained on CPU needs no dtype argument.
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    spec_name, _revision, variables = read_ct2_model(src_dir / "model.bin")
    if spec_name != "WhisperSpec":
        raise ValueError(f"{src_dir / 'model.bin'}: expected spec 'WhisperSpec', got {spec_name!r}")
    _check_spec_flags(variables)
    ct2_config = json.loads((src_dir / "config.json").read_text())
    vocab_size = _take(variables, "decoder/embeddings/weight").shape[0]
    tok = build_tokenizer(src_dir / "tokenizer.json", normalizer_json, vocab_size)
    check_tokenizer_vocabulary(tok, src_dir / "vocabulary.txt")
    special = special_token_ids(tok, ct2_config["lang_ids"])

    config = whisper_config(variables, special["ids"], ct2_config)
    state = {k: t.float() for k, t in ct2_to_hf_state_dict(variables).items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]  # tied head
    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state, strict=True)
    model.generation_config = whisper_generation_config(special, ct2_config, config.max_target_positions)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer=tok)
    processor.save_pretrained(out_dir)
    if normalizer_json is not None:
        # TokenizersBackend.save_pretrained does not write it; WhisperTokenizer reloads it by this name.
        shutil.copy(normalizer_json, out_dir / "normalizer.json")
    return out_dir


def check_against_openai_assets(model_dir: Path, assets_dir: Path) -> dict:
    """Compare the saved processor with openai-whisper's own assets (multilingual.tiktoken, mel_filters.npz).

    openai-whisper decodes token id r as the bytes listed with rank r in multilingual.tiktoken;
    our byte-level BPE strings must map to exactly those bytes for every ordinary token.
    """
    import base64

    import numpy as np
    from transformers import WhisperProcessor
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    processor = WhisperProcessor.from_pretrained(model_dir)
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    ranks = {}
    for line in (Path(assets_dir) / "multilingual.tiktoken").read_text().splitlines():
        token_b64, rank = line.split()
        ranks[int(rank)] = base64.b64decode(token_b64)
    strings = processor.tokenizer.convert_ids_to_tokens(list(range(len(ranks))))
    for rank, s in enumerate(strings):
        got = bytes(byte_of[ch] for ch in s)
        if got != ranks[rank]:
            raise ValueError(f"token {rank}: expected bytes {ranks[rank]!r} (tiktoken), got {got!r}")
    n_mels = processor.feature_extractor.feature_size
    ref = np.load(Path(assets_dir) / "mel_filters.npz")[f"mel_{n_mels}"]  # (n_mels, n_fft // 2 + 1)
    mel_err = float(np.abs(ref - processor.feature_extractor.mel_filters.T).max())
    if mel_err > 1e-6:
        raise ValueError(f"mel filters: expected max |diff| <= 1e-6 against openai's, got {mel_err:.3g}")
    return {"tokens_checked": len(ranks), "mel_filter_max_diff": mel_err}

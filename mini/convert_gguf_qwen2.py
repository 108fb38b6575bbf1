"""Turn the Qwen2.5-Coder-0.5B-Instruct GGUF into a plain safetensors Qwen2 folder.

transformers reads GGUF itself (``from_pretrained(dir, gguf_file=...)``); the work here is to
ask for a fully dequantized model, strip the GGUF quantizer state so the model saves as an
ordinary checkpoint, and give the tokenizer the shape of Qwen's published one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

# Qwen2.5's published tokenizer_config lists these as additional special tokens; the GGUF
# metadata only marks them special inside the tokenizers backend.
QWEN2_EXTRA_SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# llama.cpp pads the token list to the embedding rows with unused "[PADnnnnnn]" entries.
GGUF_PAD_TOKEN = re.compile(r"\[PAD\d+\]")


def load_gguf_model(gguf_path: str | Path, dtype: torch.dtype = torch.float32):
    """Load the GGUF dequantized into a plain Qwen2ForCausalLM with no quantizer attached."""
    from transformers import AutoModelForCausalLM, GgufConfig

    gguf_path = Path(gguf_path)
    # dequantize=True: never keep GGUF blocks (that path appears when the `kernels` package is installed).
    # dtype goes to from_pretrained, not .to(): .to() would also cast the float32 RoPE inv_freq buffer,
    # so the model would no longer match one reloaded from the saved folder.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # Leaves an ordinary model: no quantization_config in config.json, save_pretrained allowed.
        quantizer.remove_quantization_config(model)
    for name, param in model.named_parameters():
        if not param.dtype.is_floating_point:
            raise ValueError(f"{name}: expected a dequantized floating-point weight, got {param.dtype}")
    return model.eval()


def load_gguf_tokenizer(gguf_path: str | Path):
    from transformers import AutoTokenizer

    gguf_path = Path(gguf_path)
    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def drop_gguf_padding_tokens(tokenizer_json: Path) -> int:
    """Remove llama.cpp's [PADnnnnnn] vocab fillers so len(tokenizer) matches Qwen's real tokenizer.

    With them, len(tokenizer) is the embedding size (151936) and any token added later would get
    an id past the embedding rows; without them new tokens start right after <|file_sep|>.
    """
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    pads = [tok for tok in vocab if GGUF_PAD_TOKEN.fullmatch(tok)]
    top = max((i for t, i in vocab.items() if t not in pads), default=-1)
    added = [t["id"] for t in data.get("added_tokens", [])]
    if pads and min(vocab[t] for t in pads) <= max([top, *added]):
        raise ValueError("GGUF padding tokens: expected them after every real token id, got them interleaved")
    for tok in pads:
        del vocab[tok]
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return len(pads)


def save_tokenizer(tok, out_dir: Path) -> None:
    """Save the GGUF-derived tokenizer, then make it look like Qwen2.5's published one."""
    from transformers import AutoTokenizer

    for t in QWEN2_EXTRA_SPECIAL_TOKENS:
        if t not in tok.get_vocab():
            raise ValueError(f"tokenizer: expected special token {t!r} in the GGUF vocabulary, got none")
    tok.add_special_tokens({"extra_special_tokens": list(QWEN2_EXTRA_SPECIAL_TOKENS)})
    tok.bos_token = None  # Qwen2.5 has no BOS; the GGUF names <|endoftext|> but never adds it.
    tok.model_max_length = 32768
    tok.save_pretrained(out_dir)
    drop_gguf_padding_tokens(out_dir / "tokenizer.json")
    reloaded = AutoTokenizer.from_pretrained(out_dir)
    if reloaded.chat_template is None:
        raise ValueError(f"{out_dir}: expected a chat template in the saved tokenizer, got none")


def qwen2_generation_config(tok):
    """Greedy by default (deterministic checks); stop on <|im_end|> (chat turn) or <|endoftext|>."""
    from transformers import GenerationConfig

    im_end, eot = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    return GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot, do_sample=False)


def convert_gguf_qwen2(gguf_path: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write config.json, model.safetensors (in `dtype`), tokenizer files and generation_config.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_gguf_tokenizer(gguf_path)
    model = load_gguf_model(gguf_path, dtype)
    model.generation_config = qwen2_generation_config(tok)
    model.save_pretrained(out_dir)
    save_tokenizer(tok, out_dir)
    return out_dir


def chat_answer(model, tok, question: str, max_new_tokens: int = 40) -> str:
    messages = [{"role": "user", "content": question}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def compare_logits(reference, candidate, tok, prompt: str) -> dict:
    """Logits of two models on one prompt: exact equality, max |diff|, argmax agreement."""
    ids = tok(prompt, return_tensors="pt").input_ids  # (1, seq)
    with torch.no_grad():
        ref = reference(ids).logits.float()  # (1, seq, vocab)
        cand = candidate(ids).logits.float()
    return {
        "tokens": ids.shape[1],
        "equal": bool(torch.equal(ref, cand)),
        "max_abs_diff": float((ref - cand).abs().max()),
        "argmax_agreement": float((ref.argmax(-1) == cand.argmax(-1)).float().mean()),
    }


def check_against_gguf(gguf_path: str | Path, out_dir: str | Path, prompt: str) -> dict:
    """Prove the saved folder is the GGUF model: exact logits once weights share the saved precision.

    The reference is the GGUF dequantized to float32. `drift` compares it with the folder as
    saved (bf16 rounding, informative only); `exact` first rounds the reference's weights to the
    saved dtype and compares in float32, where nothing but the weights could differ.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out_dir)
    reference = load_gguf_model(gguf_path, torch.float32)
    saved = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    saved_dtype = saved.dtype
    drift = compare_logits(reference, saved, tok, prompt)
    del saved
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(param.to(saved_dtype).float())
    saved32 = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    exact = compare_logits(reference, saved32, tok, prompt)
    if not exact["equal"]:
        raise ValueError(f"logits: expected the saved model to equal the GGUF model rounded to {saved_dtype}, "
                         f"got max |diff| {exact['max_abs_diff']}")
    return {"saved_dtype": str(saved_dtype), "exact": exact, "drift_vs_fp32": drift}


def check_tokenizer(gguf_path: str | Path, out_dir: str | Path, sample: str) -> dict:
    """The saved tokenizer must encode like the GGUF one and keep Qwen2-VL's vision tokens."""
    from transformers import AutoConfig, AutoTokenizer

    saved = AutoTokenizer.from_pretrained(out_dir)
    original = load_gguf_tokenizer(gguf_path)
    if saved(sample).input_ids != original(sample).input_ids:
        raise ValueError(f"tokenizer: expected the saved tokenizer to encode {sample!r} like the GGUF one, got a difference")
    vision = {t: saved.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    missing = [t for t, i in vision.items() if i is None or i == saved.unk_token_id or saved.convert_ids_to_tokens(i) != t]
    if missing:
        raise ValueError(f"tokenizer: expected special tokens {missing} to survive, got them missing")
    vocab_size = AutoConfig.from_pretrained(out_dir).vocab_size
    if len(saved) > vocab_size:
        raise ValueError(f"tokenizer: expected at most {vocab_size} tokens (embedding rows), got {len(saved)}")
    return {"len_tokenizer": len(saved), "config_vocab_size": vocab_size, "vision_token_ids": vision}

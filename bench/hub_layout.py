"""Random-weight stand-ins for the release graft's two checkpoints, in their exact Hub layout.

    python -m bench.hub_layout --out build/rehearse-7b/hub [--scale full|tiny] [--tokenizer build/components/qwen2.5-coder-0.5b-instruct]

Nothing is downloaded: the shapes are public. Writes

- `Qwen2-VL-7B-Instruct/`: the published config.json, sharded bf16 safetensors (4 GB shards and
  `model.safetensors.index.json`) under the checkpoint's own key names (`model.layers.*`,
  `model.embed_tokens.weight`, `visual.*`, `lm_head.weight`), and a tokenizer in Qwen2-VL's
  layout: the Qwen2 vocabulary of `--tokenizer` (the mini components' Qwen2.5 tokenizer) with its
  special tokens up to `<|video_pad|>` (151656), as Qwen2-VL's ends, so `train.build` adds the
  audio tokens at 151657-151659;
- `whisper-large-v3-turbo/`: its config, its 128-mel feature extractor and fp16 `model.safetensors`
  under its own names (`model.encoder.*`, `model.decoder.*`).

Weights are drawn shard by shard (normal, std 0.02; norms one, biases zero), so the memory used is
about one shard. `--scale tiny` writes the same layout at a few MB with the tests' byte-level
tokenizer, for the tests and a quick run of the rehearsal.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

# Qwen/Qwen2-VL-7B-Instruct's published config.json (the fields its checkpoint was saved with).
QWEN2_VL_7B_CONFIG = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
    "max_window_layers": 28, "model_type": "qwen2_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                      "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
}  # fmt: skip
# A few-MB model of the same layout (the tests' tiny graft's sizes).
QWEN2_VL_TINY_CONFIG = {
    **QWEN2_VL_7B_CONFIG, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_window_layers": 2, "vocab_size": 512,  # token ids: the tests' tokenizer's
    "vision_config": {"depth": 1, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "hidden_size": 64,
                      "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
}  # fmt: skip
LAST_QWEN2_VL_TOKEN = 151656  # <|video_pad|>: Qwen2-VL's tokenizer ends there
SHARD_BYTES = 4 * 10**9
NORM_SUFFIXES = ("norm.weight", "norm1.weight", "norm2.weight", "layernorm.weight", "layer_norm.weight", "ln_q.weight")


def whisper_config(scale: str) -> WhisperConfig:
    from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig

    turbo = Qwen2AudioGraftConfig().audio_config  # the graft's default: whisper-large-v3-turbo's shapes
    if scale == "full":
        return WhisperConfig(**{**turbo.to_dict(), "max_target_positions": 448, "torch_dtype": "float16"})
    return WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                         decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=128, max_source_positions=1500,
                         vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)  # fmt: skip


def hub_key(name: str) -> str:
    """A Qwen2-VL parameter's name in the Hub checkpoint (transformers 5 nests the decoder and the vision tower)."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    if name.startswith("model.visual."):
        return name[len("model.") :]
    return name


def random_tensor(name: str, shape, dtype, generator) -> torch.Tensor:
    if name.endswith(NORM_SUFFIXES):
        return torch.ones(shape, dtype=dtype)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=dtype)
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, 0.02, generator=generator).to(dtype)


def write_random(model, folder: Path, dtype, rename=lambda name: name, skip=(), shard_bytes=SHARD_BYTES) -> dict:
    """Random weights for every parameter of a meta-device `model`, written in shards of at most `shard_bytes`
    under `rename`d keys; returns the index (the weight map and total size)."""
    generator = torch.Generator().manual_seed(0)
    named = [(rename(n), p.shape) for n, p in model.state_dict().items() if n not in skip]
    shards, current, size = [], [], 0
    for name, shape in named:
        nbytes = shape.numel() * torch.finfo(dtype).bits // 8
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for index, shard in enumerate(shards, start=1):
        file = "model.safetensors" if len(shards) == 1 else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: random_tensor(name, shape, dtype, generator) for name, shape in shard}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({name: file for name in tensors})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    if len(shards) > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def qwen2_vl_tokenizer(source: str | None, folder: Path) -> None:
    """The Qwen2 vocabulary of `source` with its added tokens up to <|video_pad|>, as Qwen2-VL's tokenizer has
    them; with no source, the tests' byte-level tokenizer."""
    if source is None:
        from train.building.tiny import SPECIAL_TOKENS, tiny_tokenizer

        tiny_tokenizer([t for t in SPECIAL_TOKENS if "audio" not in t.lower()]).save_pretrained(folder)
        return
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] <= LAST_QWEN2_VL_TOKEN]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    decoder = config.get("added_tokens_decoder", {})
    config["added_tokens_decoder"] = {k: v for k, v in decoder.items() if int(k) <= LAST_QWEN2_VL_TOKEN}
    config["extra_special_tokens"] = [t for t in config.get("extra_special_tokens", []) or []
                                      if t in {v["content"] for v in config["added_tokens_decoder"].values()}]  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    last = max(t["id"] for t in data["added_tokens"])
    if last != LAST_QWEN2_VL_TOKEN:
        raise ValueError(f"{source}: expected added tokens up to {LAST_QWEN2_VL_TOKEN} (<|video_pad|>), got up to {last}")


def tiny_token_ids() -> dict:
    """The special token ids of the tests' byte-level tokenizer, under Qwen2-VL's config names."""
    from train.building.tiny import tiny_tokenizer

    ids = tiny_tokenizer().convert_tokens_to_ids
    return {"bos_token_id": ids("<|im_start|>"), "eos_token_id": ids("<|im_end|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>"),
            "vision_token_id": ids("<|image_pad|>"), "image_token_id": ids("<|image_pad|>"),
            "video_token_id": ids("<|video_pad|>")}  # fmt: skip


def write_qwen2_vl(out: Path, scale: str, tokenizer: str | None) -> Path:
    folder = out / "Qwen2-VL-7B-Instruct"
    folder.mkdir(parents=True, exist_ok=True)
    published = QWEN2_VL_7B_CONFIG if scale == "full" else {**QWEN2_VL_TINY_CONFIG, **tiny_token_ids()}
    (folder / "config.json").write_text(json.dumps(published, indent=2) + "\n")
    config = Qwen2VLConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    write_random(model, folder, torch.bfloat16, rename=hub_key)
    qwen2_vl_tokenizer(tokenizer, folder)
    return folder


def write_whisper(out: Path, scale: str) -> Path:
    folder = out / "whisper-large-v3-turbo"
    folder.mkdir(parents=True, exist_ok=True)
    config = whisper_config(scale)
    config.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(folder)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    # proj_out shares the decoder's token embedding: the checkpoint stores it once
    write_random(model, folder, torch.float16, skip=("proj_out.weight",))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument("--tokenizer", help="a Qwen2 tokenizer folder (full scale; default: the mini components')")
    args = parser.parse_args(argv)
    tokenizer = args.tokenizer or ("build/components/qwen2.5-coder-0.5b-instruct" if args.scale == "full" else None)
    if tokenizer and not Path(tokenizer).exists():
        raise SystemExit(f"{tokenizer} not found: python -m mini.fetch_components fetches it, or pass --tokenizer")
    print(f"wrote {write_qwen2_vl(args.out, args.scale, tokenizer)} and {write_whisper(args.out, args.scale)}")


if __name__ == "__main__":
    main()

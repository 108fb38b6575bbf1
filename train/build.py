"""Compose an audio graft and save it as a complete remote-code model folder.

    python -m train.build --tiny --output build/tiny-graft
    python -m train.build --llm Qwen/Qwen2-VL-7B-Instruct --encoder openai/whisper-large-v3-turbo \
        --output build/qwen2-vl-7b-audio [--audio_downsample 2 --projector_type mlp]
    python -m train.build --release_config --output .

`--tiny` writes a few-MB random graft with an offline byte-level tokenizer that carries the
Qwen2-VL and audio special tokens: nothing is downloaded (`train.building.tiny`). `--llm` takes a Qwen2-VL
checkpoint, or a text-only Qwen2 causal LM whose weights go into the Qwen2-VL text model (then no
vision tower is built unless `--vision_tower` is given). The projector is freshly initialised, its
outputs at RMS `--projector_gain` (1.0; `embedding` for the text-embedding RMS). `<|audio_bos|>`,
`<|AUDIO|>` and `<|audio_eos|>` take embedding rows the LLM never trained: they start at the mean
of its trained input embeddings (`init_audio_marker_rows`). `--release_config` writes only the
release graft's configs (`train.building.release`).
"""

import argparse
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    Qwen2VLForConditionalGeneration,
    WhisperFeatureExtractor,
    WhisperModel,
)

from qwen2_audio_graft.configuration_qwen2_audio_graft import Qwen2AudioGraftConfig
from qwen2_audio_graft.processing_qwen2_audio_graft import DEFAULT_SYSTEM_PROMPT, chat_template
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration, Qwen2AudioGraftProjector

from .building.folder import AUDIO_SPECIAL_TOKENS, generation_config, make_processor, save_graft, token_ids
from .building.release import write_release_config
from .building.tiny import build_tiny

# The projector's starting output RMS. Measured on the mini graft (docs/training.md, "Projector
# scale"): at 300 joint steps, gain 1.0 listens (own-audio loss 2.71 against 4.49 zeroed) where the
# text-embedding RMS (0.0173 for Qwen2.5-0.5B) has not begun to (4.15 against 4.15), same data.
DEFAULT_PROJECTOR_GAIN = 1.0


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's split of the rotary half-dimension into time, height and width sections."""
    half = head_dim // 2
    time = half // 4
    return [time, (half - time) // 2, half - time - (half - time) // 2]


def text_config_from_qwen2(llm_config) -> dict:
    """A text-only Qwen2 config as a Qwen2-VL text config (same weights, M-RoPE sections added)."""
    head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // llm_config.num_attention_heads
    rope = dict(getattr(llm_config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 1000000.0})
    rope["mrope_section"] = mrope_section(head_dim)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "bos_token_id",
            "eos_token_id")  # fmt: skip
    return {**{key: getattr(llm_config, key) for key in keys}, "rope_parameters": rope}


def load_llm(llm: str, dtype):
    """(state dict in the graft's key layout, text config, vision config or None, tie_word_embeddings)."""
    llm_config = AutoConfig.from_pretrained(llm)
    if llm_config.model_type == "qwen2_vl":
        model = Qwen2VLForConditionalGeneration.from_pretrained(llm, dtype=dtype)
        state = model.state_dict()
        return state, model.config.text_config.to_dict(), model.config.vision_config.to_dict(), model.config.tie_word_embeddings
    if llm_config.model_type != "qwen2":
        raise ValueError(f"--llm must be a Qwen2-VL or Qwen2 checkpoint, got model_type {llm_config.model_type!r}")
    model = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype)
    # Qwen2ForCausalLM keeps its decoder under `model.`; the graft keeps it under `model.language_model.`
    state = {("lm_head.weight" if k == "lm_head.weight" else "model.language_model." + k[len("model.") :]): v
             for k, v in model.state_dict().items()}  # fmt: skip
    return state, text_config_from_qwen2(llm_config), None, bool(getattr(llm_config, "tie_word_embeddings", False))


def load_encoder(encoder: str, dtype):
    """(Whisper encoder weights in the graft's key layout, WhisperConfig, WhisperFeatureExtractor)."""
    whisper = WhisperModel.from_pretrained(encoder, dtype=dtype)
    state = {"model.audio_tower." + k: v for k, v in whisper.encoder.state_dict().items()}
    return state, whisper.config, WhisperFeatureExtractor.from_pretrained(encoder)


def add_audio_tokens(tokenizer, vocab_size: int) -> None:
    missing = [t for t in AUDIO_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(token, special=True) for token in missing], special_tokens=True)
    if len(tokenizer) > vocab_size:
        raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the embedding only {vocab_size} rows")


def compose(llm, encoder, output: Path, audio_downsample=1, projector_type="linear", max_audio_seconds=300.0,
            vision_tower=None, dtype=torch.bfloat16, seed=0, projector_norm=True, encode_padding=True,
            projector_gain=DEFAULT_PROJECTOR_GAIN, system_prompt=True):  # fmt: skip
    """Graft `encoder`'s Whisper encoder onto `llm` with a new projector and save everything.

    `projector_gain` is the RMS the projector's outputs start at (its RMSNorm's gain): a number,
    or None for the LLM's text-embedding RMS. `system_prompt=False` saves a chat template that adds
    no default system message (11 tokens fewer a prompt; training and inference both read it)."""
    torch.manual_seed(seed)
    llm_state, text_config, vision_config, tied = load_llm(llm, dtype)
    audio_state, audio_config, feature_extractor = load_encoder(encoder, dtype)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    trained_rows = len(tokenizer)  # the LLM's own tokens: rows past them were never trained
    add_audio_tokens(tokenizer, text_config["vocab_size"])
    use_vision = vision_config is not None if vision_tower is None else vision_tower
    config = Qwen2AudioGraftConfig(
        text_config=text_config, vision_config=vision_config, audio_config=audio_config.to_dict(),
        audio_downsample=audio_downsample, projector_type=projector_type, max_audio_seconds=max_audio_seconds,
        use_vision_tower=use_vision, tie_word_embeddings=tied, dtype=dtype, projector_norm=projector_norm,
        encode_padding=encode_padding, **token_ids(tokenizer),
    )  # fmt: skip
    with torch.device("meta"):
        model = Qwen2AudioGraftForConditionalGeneration(config)
    state = {**llm_state, **audio_state}
    if not use_vision:
        state = {k: v for k, v in state.items() if not k.startswith("model.visual.")}
    result = model.load_state_dict(state, strict=False, assign=True)
    _init_left_out(model, result.missing_keys, dtype, projector_gain)
    if tied:
        model.tie_weights()
    init_audio_marker_rows(model, tokenizer, trained_rows)
    model.generation_config = generation_config(tokenizer)
    template = chat_template(DEFAULT_SYSTEM_PROMPT if system_prompt else None)
    processor = make_processor(tokenizer, config, chat_template=template)
    processor.feature_extractor = feature_extractor
    save_graft(model.eval(), processor, output)
    return model, processor


@torch.no_grad()
def init_audio_marker_rows(model, tokenizer, trained_rows: int) -> list[int]:
    """Give the new audio tokens that sit on never-trained embedding rows (ids at or past
    `trained_rows`: 151657-151659 in Qwen2-VL, 151665-151667 in Qwen2.5) the mean of the trained
    input embeddings, so `<|audio_bos|>` and `<|audio_eos|>` start as an average token rather than
    as whatever the padding rows hold. Returns the ids set."""
    embeddings = model.get_input_embeddings().weight
    mean = embeddings[:trained_rows].float().mean(0).to(embeddings.dtype)
    ids = [i for i in (tokenizer.convert_tokens_to_ids(t) for t in AUDIO_SPECIAL_TOKENS) if i >= trained_rows]
    for token_id in ids:
        embeddings[token_id] = mean
    return ids


def encoder_output_rms(audio_tower) -> float:
    """RMS of the Whisper encoder's outputs, from its final LayerNorm: unit-variance features
    scaled by gamma and shifted by beta have mean square mean(gamma**2) + mean(beta**2)."""
    weight, bias = audio_tower.layer_norm.weight.detach().float(), audio_tower.layer_norm.bias.detach().float()
    return float((weight.pow(2).mean() + bias.pow(2).mean()).sqrt())


def embedding_rms(model) -> float:
    return float(model.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt())


def _init_left_out(model, missing_keys, dtype, projector_gain=DEFAULT_PROJECTOR_GAIN) -> None:
    """Fresh weights for what no checkpoint provides: the projector, and a vision tower asked for
    on a text-only LLM. Anything else missing is a mapping error."""
    fresh = ("model.audio_projector.", "model.visual.")
    unexpected = [k for k in missing_keys if not k.startswith(fresh) and k != "lm_head.weight"]
    if unexpected:
        raise ValueError(f"These weights were not found in the checkpoints: {unexpected[:10]}")
    projector = Qwen2AudioGraftProjector(model.config)
    gain = embedding_rms(model) if projector_gain is None else projector_gain
    projector.init_to_scale(encoder_output_rms(model.model.audio_tower), gain)
    model.model.audio_projector = projector.to(dtype)
    if any(k.startswith("model.visual.") for k in missing_keys):
        visual = type(model.model.visual)._from_config(model.config.vision_config)
        model.model.visual = visual.to(dtype)


def _gain(value: str) -> float | None:
    return None if value == "embedding" else float(value)


def _add_switch(parser, name: str, default, help=None) -> None:
    """`--name` and `--no_name`, spelled as HfArgumentParser spells the stages' boolean flags."""
    parser.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    parser.add_argument(f"--no_{name}", dest=name, action="store_false")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--tiny", action="store_true", help="a few-MB random graft, nothing downloaded")
    parser.add_argument("--release_config", action="store_true", help="only the release 7B graft's configs")
    parser.add_argument("--llm", help="Qwen2-VL or Qwen2 checkpoint (path or Hub id)")
    parser.add_argument("--encoder", help="Whisper checkpoint (path or Hub id)")
    parser.add_argument("--audio_downsample", type=int, default=1, choices=(1, 2, 4, 8))
    parser.add_argument("--projector_type", default="linear", choices=("linear", "mlp"))
    _add_switch(parser, "projector_norm", True,
                "end the projector with an RMSNorm at the text embeddings' scale (composed grafts)")
    _add_switch(parser, "encode_padding", True,
                "the encoder sees whole 30 s windows (default) or, with --no_encode_padding, real audio only")
    _add_switch(parser, "system_prompt", True,
                "prompts without a system message get Qwen2-VL's default one (default); --no_system_prompt: none, "
                "11 tokens fewer a prompt")
    parser.add_argument("--projector_gain", type=_gain, default=DEFAULT_PROJECTOR_GAIN,
                        help="the projector's starting output RMS, or 'embedding' for the LLM's text-embedding RMS")
    parser.add_argument("--max_audio_seconds", type=float, default=300.0)
    _add_switch(parser, "vision_tower", None)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = parser.parse_args(argv)
    if args.release_config:
        write_release_config(args.output, args.audio_downsample, args.projector_type)
    elif args.tiny:
        build_tiny(args.output, args.audio_downsample, args.projector_type, encode_padding=args.encode_padding)
    elif args.llm and args.encoder:
        compose(args.llm, args.encoder, args.output, args.audio_downsample, args.projector_type,
                args.max_audio_seconds, args.vision_tower, getattr(torch, args.dtype),
                projector_norm=args.projector_norm, encode_padding=args.encode_padding,
                projector_gain=args.projector_gain, system_prompt=args.system_prompt)  # fmt: skip
    else:
        parser.error("give --tiny, or both --llm and --encoder")
    print(f"Saved the graft to {args.output}")


if __name__ == "__main__":
    main()

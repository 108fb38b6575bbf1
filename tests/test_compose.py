"""`train.build` composes a graft from real-format checkpoints and keeps their weights exactly."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2VLConfig, Qwen2VLForConditionalGeneration, WhisperConfig
from transformers import WhisperFeatureExtractor, WhisperModel

from tests.conftest import make_clip
from train.build import compose, mrope_section
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftForConditionalGeneration
from train.building.tiny import SPECIAL_TOKENS, tiny_tokenizer


def _whisper(folder):
    config = WhisperConfig(
        d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None,
    )  # fmt: skip
    model = WhisperModel(config).eval()
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return model


def _text_only_tokenizer(folder):
    tokenizer = tiny_tokenizer(SPECIAL_TOKENS[:7])  # vision tokens only: compose must add the audio ones
    assert "<|AUDIO|>" not in tokenizer.get_vocab()
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_mrope_sections_of_known_models():
    assert mrope_section(128) == [16, 24, 24]  # Qwen2-VL-7B
    assert mrope_section(64) == [8, 12, 12]  # Qwen2.5-0.5B


def test_compose_from_text_only_qwen2(tmp_path):
    tokenizer = _text_only_tokenizer(tmp_path / "llm")
    llm = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True,
    )).eval()  # fmt: skip
    llm.save_pretrained(tmp_path / "llm")
    whisper = _whisper(tmp_path / "whisper")
    graft, processor = compose(tmp_path / "llm", tmp_path / "whisper", tmp_path / "out", dtype=torch.float32)
    assert graft.model.visual is None  # a text-only LLM brings no vision tower
    ids = torch.tensor([tokenizer.encode("hello there, graft")])
    with torch.no_grad():
        expected = llm(input_ids=ids).logits
        reloaded = Qwen2AudioGraftForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
        got = reloaded(input_ids=ids).logits
        features = processor.feature_extractor(make_clip(1.0), sampling_rate=16000, return_tensors="pt")
        enc_expected = whisper.encoder(features["input_features"]).last_hidden_state
        enc_got = reloaded.model.audio_tower(features["input_features"]).last_hidden_state
    # The audio tokens' rows (tied to lm_head here) start at the mean embedding: only the LLM's own
    # tokens keep its logits.
    trained = len(tokenizer)
    torch.testing.assert_close(got[..., :trained], expected[..., :trained], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc_got, enc_expected, rtol=1e-5, atol=1e-5)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.language_model.embed_tokens.weight.data_ptr()
    for token in SPECIAL_TOKENS[7:]:
        assert processor.tokenizer.convert_tokens_to_ids(token) < 512


def test_compose_from_qwen2_vl_keeps_vision(tmp_path):
    tokenizer = _text_only_tokenizer(tmp_path / "vl")
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2),
    )  # fmt: skip
    vl = Qwen2VLForConditionalGeneration(config).eval()
    vl.save_pretrained(tmp_path / "vl")
    _whisper(tmp_path / "whisper")
    graft, processor = compose(tmp_path / "vl", tmp_path / "whisper", tmp_path / "out", dtype=torch.float32)
    reloaded = Qwen2AudioGraftForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    expected = vl.state_dict()
    got = reloaded.state_dict()
    embeddings = "model.language_model.embed_tokens.weight"
    trained = len(tokenizer)  # rows past these are the new audio tokens'
    for key, value in expected.items():
        rows = slice(None, trained) if key == embeddings else slice(None)
        torch.testing.assert_close(got[key][rows], value[rows], rtol=0, atol=0, msg=key)
    mean = expected[embeddings][:trained].mean(0)
    for token in SPECIAL_TOKENS[7:]:
        row = processor.tokenizer.convert_tokens_to_ids(token)
        torch.testing.assert_close(got[embeddings][row], mean, msg=token)
    assert any(key.startswith("model.visual.") for key in got)
    assert {k.split(".")[1] for k in got if k.startswith("model.audio_projector")} == {"audio_projector"}


def test_projector_output_matches_the_text_embedding_scale(tmp_path):
    tokenizer = _text_only_tokenizer(tmp_path / "llm")
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, initializer_range=0.02))  # fmt: skip
    llm.save_pretrained(tmp_path / "llm")
    _whisper(tmp_path / "whisper")
    text_rms = llm.get_input_embeddings().weight.detach().pow(2).mean().sqrt()

    def ratio(graft, inputs):
        with torch.no_grad():
            audio = graft.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        return float(audio.pow(2).mean().sqrt() / text_rms)

    for projector_type in ("linear", "mlp"):
        for norm in (True, False):
            graft, processor = compose(tmp_path / "llm", tmp_path / "whisper", tmp_path / f"{projector_type}-{norm}",
                                       projector_type=projector_type, audio_downsample=2, dtype=torch.float32,
                                       projector_norm=norm, projector_gain=None)  # fmt: skip
            assert isinstance(graft.model.audio_projector.norm, torch.nn.RMSNorm) == norm
            # the optional layers left out are nn.Identity: no keys, so the checkpoints' keys stay these
            keys = {"linear_1.weight", "linear_1.bias"}
            keys |= {"linear_2.weight", "linear_2.bias"} if projector_type == "mlp" else set()
            keys |= {"norm.weight"} if norm else set()
            assert set(graft.model.audio_projector.state_dict()) == keys
            inputs = processor(text="<|AUDIO|>", audio=make_clip(3.0), sampling_rate=16000)
            assert 0.5 < ratio(graft, inputs) < 2.0, (projector_type, norm)
            with torch.no_grad():  # as a large learning rate would: the norm keeps the scale
                graft.model.audio_projector.linear_1.weight.mul_(50)
            assert (0.5 < ratio(graft, inputs) < 2.0) == norm, (projector_type, norm, ratio(graft, inputs))
    assert tokenizer is not None


def test_no_system_prompt_saves_a_template_without_the_default_system_message(tmp_path):
    from transformers import AutoProcessor

    from mini.demo import built_system_prompt
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt
    from qwen2_audio_graft.processing_qwen2_audio_graft import chat_template

    _text_only_tokenizer(tmp_path / "llm")
    config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "llm")
    _whisper(tmp_path / "whisper")
    prompts = {}
    for system_prompt in (True, False):
        out = tmp_path / f"out-{system_prompt}"
        compose(tmp_path / "llm", tmp_path / "whisper", out, dtype=torch.float32, system_prompt=system_prompt)
        processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
        prompts[system_prompt] = build_prompt(processor)
        assert built_system_prompt(out) is system_prompt
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert prompts[True] == system + prompts[False]
    assert prompts[False] == ("<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe this audio.<|im_end|>\n"
                              "<|im_start|>assistant\n")
    assert built_system_prompt(tmp_path / "nothing-here") is None
    (tmp_path / "out-False" / "chat_template.jinja").write_text("{{ messages }}")
    unknown = r"chat_template\.jinja is neither chat template train\.build writes: rebuild "
    with pytest.raises(ValueError, match=unknown):
        built_system_prompt(tmp_path / "out-False")
    syntax = r"^default_system_prompt holds template or special-token syntax: '\{\{ x \}\}'$"
    with pytest.raises(ValueError, match=syntax):
        chat_template("{{ x }}")

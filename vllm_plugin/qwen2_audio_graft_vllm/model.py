"""The audio graft in vLLM: vLLM's Qwen2 language model, the graft's own Whisper encoder and projector.

The language model is vLLM's (`Qwen2ForCausalLM` over the graft's text config: paged KV cache,
continuous batching); the audio path is the graft's own code (`Qwen2AudioGraftModel.get_audio_features`
on transformers' `WhisperEncoder` and the graft's projector), so a clip becomes exactly the
embeddings it becomes under transformers. Prompts are built by the graft's own processor, which
expands each `<|AUDIO|>` into `num_audio_tokens` placeholders; audio tokens take text positions
(M-RoPE with equal time, height and width positions, as the graft's model gives them). One clip
is at most one 30 s window here; longer audio goes through the transcription endpoint, which cuts
it at pauses (`qwen2_audio_graft_vllm.segments`). Images are not served by this plugin.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn
from transformers import BatchFeature
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from vllm.config import VllmConfig
from vllm.config.speech_to_text import SpeechToTextConfig
from vllm.inputs import TokensPrompt
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import AudioProcessorItems, MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)

from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE, WINDOW_SAMPLES, num_audio_tokens
from qwen2_audio_graft.modeling_qwen2_audio_graft import Qwen2AudioGraftModel, Qwen2AudioGraftProjector
from qwen2_audio_graft.pipeline_qwen2_audio_graft import (
    DEFAULT_INSTRUCTION,
    DEFAULT_SEGMENT_SECONDS,
    FRAME_SAMPLES,
    build_prompt,
)
from vllm.model_executor.models.interfaces import (
    MultiModalEmbeddings,
    SupportsMRoPE,
    SupportsMultiModal,
    SupportsTranscription,
)
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, init_vllm_registered_model, maybe_prefix

AUDIO_PLACEHOLDER = "<|audio_bos|><|AUDIO|><|audio_eos|>"


@functools.cache
def graft_processor(model: str):
    """The graft folder's own processor (its chat template and tokenizer), loaded once."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model, trust_remote_code=True)


class GraftProcessingInfo(BaseProcessingInfo):
    def get_hf_processor(self, **kwargs: object):
        return self.ctx.get_hf_processor(**kwargs)

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(target_sr=SAMPLING_RATE, target_channels=1, audio_resample_method="scipy")

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"audio": None}

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int] | None = None) -> Mapping[str, int]:
        return {"audio": num_audio_tokens(WINDOW_SAMPLES, self.get_hf_config().audio_downsample)}


class GraftDummyInputsBuilder(BaseDummyInputsBuilder[GraftProcessingInfo]):
    """For memory profiling: as many clips as asked, each the longest a prompt takes here (30 s)."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return AUDIO_PLACEHOLDER * mm_counts.get("audio", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options=None):
        overrides = (mm_options or {}).get("audio") if mm_options else None
        return {"audio": self._get_dummy_audios(length=WINDOW_SAMPLES, num_audios=mm_counts.get("audio", 0),
                                                overrides=overrides)}  # fmt: skip


def audio_fields(hf_inputs: Mapping[str, torch.Tensor]) -> Mapping[str, MultiModalFieldConfig]:
    return {"input_features": MultiModalFieldConfig.batched("audio"),
            "input_features_mask": MultiModalFieldConfig.batched("audio")}  # fmt: skip


class GraftMultiModalProcessor(BaseMultiModalProcessor[GraftProcessingInfo]):
    """The graft's own processor makes the prompt: it expands `<|AUDIO|>` to the clip's token count."""

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        data = dict(hf_data)
        clips = data.pop("audios", None) or data.pop("audio", None)
        if clips:
            too_long = [i for i, clip in enumerate(clips) if len(clip) > WINDOW_SAMPLES]
            if too_long:
                raise ValueError(f"audio clip {too_long[0]} is {len(clips[too_long[0]]) / SAMPLING_RATE:.1f} s long; "
                                 "one clip takes at most 30 s here: /v1/audio/transcriptions cuts longer audio at pauses")  # fmt: skip
            if any(len(clip) == 0 for clip in clips):
                raise ValueError("audio clip is empty: expected at least one sample")
            if "text" not in data:  # vLLM asks for the clips' features alone; the prompt updates expand <|AUDIO|>
                processor = self.info.get_hf_processor(**hf_kwargs)
                return BatchFeature(processor.audio_windows(processor._prepare_audio(list(clips), SAMPLING_RATE)))
            data.update(audio=list(clips), sampling_rate=SAMPLING_RATE)
        return super()._call_hf_processor(data, hf_kwargs)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return audio_fields(hf_inputs)

    def _apply_prompt_updates(self, token_ids, mm_prompt_updates):
        # The same rule and words as the graft's processor, before vLLM's own assertion can fire.
        clips, found = len(mm_prompt_updates.get("audio", [])), list(token_ids).count(self.info.get_hf_config().audio_token_id)
        if found != clips:
            raise ValueError(f"The text holds {found} <|AUDIO|> placeholders but {clips} audio clips were given")
        return super()._apply_prompt_updates(token_ids, mm_prompt_updates)

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:  # fmt: skip
        config = self.info.get_hf_config()
        audios = mm_items.get_items("audio", AudioProcessorItems) if "audio" in mm_items else None

        def replacement(item_idx: int) -> list[int]:
            return [config.audio_token_id] * num_audio_tokens(audios.get_audio_length(item_idx), config.audio_downsample)

        return [PromptReplacement(modality="audio", target=[config.audio_token_id], replacement=replacement)]


class GraftAudioFrontEnd(nn.Module):
    """The graft's audio path (`audio_tower` + `audio_projector`) with the graft's own methods."""

    get_audio_features = Qwen2AudioGraftModel.get_audio_features
    audio_token_lengths = Qwen2AudioGraftModel.audio_token_lengths
    encode_audio = Qwen2AudioGraftModel.encode_audio
    _check_encoder_states = Qwen2AudioGraftModel._check_encoder_states
    encoder_frames_needed = Qwen2AudioGraftModel.encoder_frames_needed

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.audio_tower = WhisperEncoder(config.audio_config)
        self.audio_projector = Qwen2AudioGraftProjector(config)


@MULTIMODAL_REGISTRY.register_processor(GraftMultiModalProcessor, info=GraftProcessingInfo,
                                        dummy_inputs=GraftDummyInputsBuilder)  # fmt: skip
class Qwen2AudioGraftForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsMRoPE, SupportsTranscription):
    supported_languages = {"en": "English"}
    # The checkpoint's names -> this module's: the graft nests its decoder as model.language_model.
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix={
        "model.language_model.": "language_model.model.", "lm_head.": "language_model.lm_head.",
        "model.audio_tower.": "audio.audio_tower.", "model.audio_projector.": "audio.audio_projector.",
        "model.visual.": None,
    })  # fmt: skip

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("audio"):
            return AUDIO_PLACEHOLDER
        raise ValueError(f"This model serves audio and text only, got {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        with self._mark_tower_model(vllm_config, "audio"):
            self.audio = GraftAudioFrontEnd(config)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config, hf_config=config.text_config, prefix=maybe_prefix(prefix, "language_model"),
                architectures=["Qwen2ForCausalLM"],
            )  # fmt: skip
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        features, mask = kwargs.get("input_features"), kwargs.get("input_features_mask")
        if features is None:
            return []
        if isinstance(features, (list, tuple)):
            features, mask = torch.stack(list(features)), torch.stack(list(mask))
        dtype = self.audio.audio_tower.conv1.weight.dtype
        tokens = self.audio.get_audio_features(features.to(dtype), mask)  # (tokens of every clip, hidden)
        return torch.split(tokens, self.audio.audio_token_lengths(mask))

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        # Audio tokens are text to M-RoPE, as in the graft's model: the three position rows are equal.
        positions = torch.arange(len(input_tokens)).expand(3, -1)
        return positions, 0

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)

    @classmethod
    def get_speech_to_text_config(cls, model_config, task_type) -> SpeechToTextConfig:
        # Audio over the pipeline's segment length is cut at pauses (FRAME_SAMPLES asks for it: .segments).
        return SpeechToTextConfig(sample_rate=SAMPLING_RATE, max_audio_clip_s=int(DEFAULT_SEGMENT_SECONDS),
                                  overlap_chunk_second=0, min_energy_split_window_size=FRAME_SAMPLES)  # fmt: skip

    @classmethod
    def get_generation_prompt(cls, stt_params) -> TokensPrompt:
        """The pipeline's prompt (`build_prompt`, the graft's chat template) around the clip; a request's
        `prompt`, if any, replaces the instruction."""
        if stt_params.task_type != "transcribe":
            raise ValueError(f"This model transcribes; it does not {stt_params.task_type}")
        processor = graft_processor(stt_params.model_config.model)
        prompt = build_prompt(processor, getattr(stt_params, "prompt", None) or DEFAULT_INSTRUCTION)
        return TokensPrompt(prompt_token_ids=processor.tokenizer(prompt, add_special_tokens=False)["input_ids"],
                            multi_modal_data={"audio": stt_params.audio})  # fmt: skip

    @classmethod
    def get_num_audio_tokens(cls, audio_duration_s: float, stt_config, model_config) -> int | None:
        return num_audio_tokens(max(1, int(audio_duration_s * SAMPLING_RATE)), model_config.hf_config.audio_downsample)

    @classmethod
    def post_process_output(cls, text: str) -> str:
        return text.strip()

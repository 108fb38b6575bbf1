"""Qwen2-VL with a Whisper audio encoder grafted on.

audio -> `audio_tower` (transformers' `WhisperEncoder`) -> `audio_projector` -> the embeddings of
the `<|AUDIO|>` placeholders of the prompt -> the Qwen2-VL language model. Images and video go
through the inherited vision path unchanged, so one prompt may hold images, audio and text.
"""

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2_vl.modeling_qwen2_vl import (
    Qwen2VisionTransformerPretrainedModel,
    Qwen2VLForConditionalGeneration,
    Qwen2VLModel,
    Qwen2VLPreTrainedModel,
    Qwen2VLTextModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .configuration_qwen2_audio_graft import HOP_LENGTH, Qwen2AudioGraftConfig, encoder_frames, num_audio_tokens
from .pipeline_qwen2_audio_graft import Qwen2AudioGraftASRPipeline  # noqa: F401  (ships the pipeline file)



def encode_real_frames(audio_tower: WhisperEncoder, input_features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """Run Whisper's encoder over each window's real mel frames only, not the padding to 30 s.

    transformers' `WhisperEncoder` takes exactly 3000 mel frames (30 s, padding included), so a
    2 s clip costs as much as a 30 s one. Here the batch is cut to its longest real window, and
    each window is encoded as if it were cut to its own `mel_lengths` frames and encoded alone
    (as Ultravox's encoder does): mel frames past its length are zeroed, as are the first
    convolution's outputs there (the zeros the convolutions pad with), and its padded positions
    are masked out of attention. So a window's states do not depend on the rest of the batch.

    Args:
        audio_tower: the graft's `WhisperEncoder` (its weights are used, not its `forward`).
        input_features: `(windows, num_mel_bins, 3000)` log-mel windows.
        mel_lengths: `(windows,)` real mel frames of each window.
    Returns:
        `(windows, ceil(longest / 2), d_model)`, zero past each window's `ceil(length / 2)` frames.
    """
    mel_lengths = mel_lengths.to(input_features.device)
    frames = encoder_frames(mel_lengths)
    longest = int(mel_lengths.max())
    mel_keep = (torch.arange(longest, device=input_features.device)[None, :] < mel_lengths[:, None]).unsqueeze(1)
    features = input_features[:, :, :longest] * mel_keep  # (windows, mel_bins, longest)
    hidden = nn.functional.gelu(audio_tower.conv1(features)) * mel_keep
    hidden = nn.functional.gelu(audio_tower.conv2(hidden)).permute(0, 2, 1)  # (windows, frames, d_model)
    hidden = hidden + audio_tower.embed_positions.weight[: hidden.shape[1]]
    keep = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]  # (windows, frames)
    # Additive mask (windows, 1, queries, keys): padded keys get the most negative value.
    mask = torch.zeros(keep.shape[0], 1, 1, keep.shape[1], dtype=hidden.dtype, device=hidden.device)
    mask = mask.masked_fill(~keep[:, None, None, :], torch.finfo(hidden.dtype).min)
    mask = mask.expand(-1, -1, keep.shape[1], -1)
    for layer in audio_tower.layers:
        hidden = layer(hidden, mask)
    return audio_tower.layer_norm(hidden) * keep.unsqueeze(-1)


class Qwen2AudioGraftProjector(nn.Module):
    """Stacks `audio_downsample` consecutive encoder frames and maps them to the LLM width
    (`linear_1`, or `linear_1`-GELU-`linear_2`), then, with `projector_norm`, RMS-normalises them
    with a learned gain (`norm`). A linear projector's `act` and `linear_2`, and `norm` without
    `projector_norm`, are `nn.Identity` (no parameters, so no state-dict keys)."""

    def __init__(self, config: Qwen2AudioGraftConfig):
        super().__init__()
        self.audio_downsample = config.audio_downsample
        in_features = config.audio_config.d_model * config.audio_downsample
        hidden_size = config.text_config.hidden_size
        mlp = config.projector_type == "mlp"
        self.linear_1 = nn.Linear(in_features, hidden_size)
        self.act = ACT2FN["gelu"] if mlp else nn.Identity()
        self.linear_2 = nn.Linear(hidden_size, hidden_size) if mlp else nn.Identity()
        norm = config.projector_norm
        self.norm = nn.RMSNorm(hidden_size, eps=config.text_config.rms_norm_eps) if norm else nn.Identity()

    @torch.no_grad()
    def init_to_scale(self, input_rms: float, output_rms: float) -> None:
        """Random weights whose outputs have root-mean-square `output_rms` for inputs of `input_rms`.

        Used by the builder with the LLM's embedding RMS as target: the default initialisation
        gives audio embeddings tens of times larger than the text embeddings they sit among.
        With the norm, the linear layers aim at unit RMS and the norm's gain carries `output_rms`."""
        layers = [layer for layer in (self.linear_1, self.linear_2) if isinstance(layer, nn.Linear)]
        normed = isinstance(self.norm, nn.RMSNorm)
        if normed:
            self.norm.weight.fill_(output_rms)
        scale = input_rms
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1
            target = output_rms if last and not normed else 1.0
            nn.init.normal_(layer.weight, std=target / (scale * layer.in_features**0.5))
            nn.init.zeros_(layer.bias)
            scale = 0.65  # RMS of GELU of a unit-RMS Gaussian, the input of the next layer

    def forward(self, encoder_states: torch.Tensor) -> torch.Tensor:
        windows, frames, width = encoder_states.shape
        # Zero-pad the frame axis to a multiple of the downsample factor; only tokens made of
        # real audio are kept afterwards, so the padding never reaches the LLM.
        pad = -frames % self.audio_downsample
        if pad:
            encoder_states = nn.functional.pad(encoder_states, (0, 0, 0, pad))
        # (windows, frames, width) -> (windows, frames / k, k * width)
        stacked = encoder_states.reshape(windows, -1, self.audio_downsample * width)
        hidden = self.linear_2(self.act(self.linear_1(stacked)))
        # Under bf16 autocast the linear layers give bf16 while a trained gain stays float32: the norm runs in
        # its gain's dtype (RMSNorm's fused kernel takes one dtype; it upcasts to float32 inside either way).
        gain = getattr(self.norm, "weight", None)
        return self.norm(hidden if gain is None else hidden.to(gain.dtype))


class Qwen2AudioGraftPreTrainedModel(Qwen2VLPreTrainedModel):
    config_class = Qwen2AudioGraftConfig
    config: Qwen2AudioGraftConfig
    input_modalities = ("audio", "image", "video", "text")
    _no_split_modules = ["Qwen2VLDecoderLayer", "Qwen2VLVisionBlock", "WhisperEncoderLayer"]


class Qwen2AudioGraftModel(Qwen2AudioGraftPreTrainedModel, Qwen2VLModel):
    """`Qwen2VLModel` plus `audio_tower` and `audio_projector`.

    `forward` additionally takes `input_features` (30 s Whisper windows of every clip in the
    batch, in prompt order) and `input_features_mask` (which mel frames are real audio), and
    writes the projected audio into the `<|AUDIO|>` positions before the parent runs.
    """

    def __init__(self, config: Qwen2AudioGraftConfig):
        # Built here rather than through Qwen2VLModel.__init__ so the vision tower can be left out.
        Qwen2VLPreTrainedModel.__init__(self, config)
        self.visual = None
        if config.use_vision_tower:
            self.visual = Qwen2VisionTransformerPretrainedModel._from_config(config.vision_config)
        self.language_model = Qwen2VLTextModel._from_config(config.text_config)
        self.audio_tower = WhisperEncoder._from_config(config.audio_config)
        self.audio_projector = Qwen2AudioGraftProjector(config)
        self.rope_deltas = None
        self.post_init()

    def audio_token_lengths(self, input_features_mask: torch.Tensor) -> list[int]:
        """Audio tokens each window contributes, from its count of real mel frames."""
        mel_lengths = input_features_mask.sum(-1).tolist()
        for index, mel_length in enumerate(mel_lengths):
            if mel_length <= 0:
                raise ValueError(f"input_features_mask row {index} marks no audio: every window must hold audio")
        return [num_audio_tokens(int(n) * HOP_LENGTH, self.config.audio_downsample) for n in mel_lengths]

    def get_audio_features(self, input_features=None, input_features_mask=None, audio_encoder_states=None):
        """Encode Whisper windows and return the projected tokens of real audio only.

        Args:
            input_features: `(windows, num_mel_bins, 3000)` log-mel windows.
            input_features_mask: `(windows, 3000)`, 1 for mel frames of real audio.
            audio_encoder_states: instead of `input_features`, the frozen encoder's outputs
                computed beforehand, `(windows, frames, d_model)`: each window's first frames,
                at least the ones its audio tokens are made of (see `encoder_frames_needed`);
                frames past those are ignored. Training uses this to encode a corpus once.
        Returns:
            `(sum of audio tokens over windows, hidden_size)`, windows in order.
        """
        expected_frames = 2 * self.config.audio_config.max_source_positions
        mel_bins = self.config.audio_config.num_mel_bins
        width = self.config.audio_config.d_model
        if audio_encoder_states is not None:
            if audio_encoder_states.ndim != 3 or audio_encoder_states.shape[-1] != width:
                raise ValueError(
                    f"audio_encoder_states must have shape (windows, frames, {width}), "
                    f"got {tuple(audio_encoder_states.shape)}"
                )
        elif input_features.ndim != 3 or input_features.shape[1:] != (mel_bins, expected_frames):
            raise ValueError(
                f"input_features must have shape (windows, {mel_bins}, {expected_frames}), "
                f"got {tuple(input_features.shape)}"
            )
        windows = (input_features if audio_encoder_states is None else audio_encoder_states).shape[0]
        if input_features_mask is None or tuple(input_features_mask.shape) != (windows, expected_frames):
            got = None if input_features_mask is None else tuple(input_features_mask.shape)
            raise ValueError(f"input_features_mask must have shape ({windows}, {expected_frames}), got {got}")
        lengths = self.audio_token_lengths(input_features_mask)
        if audio_encoder_states is None:
            encoder_states = self.encode_audio(input_features, input_features_mask)
        else:
            encoder_states = self._check_encoder_states(audio_encoder_states, input_features_mask)
        # The frozen encoder may run in bf16 while the trained projector is kept in float32.
        encoder_states = encoder_states.to(self.audio_projector.linear_1.weight.dtype)
        tokens = self.audio_projector(encoder_states)  # (windows, ceil(frames / k), hidden)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        keep = positions[None, :] < torch.tensor(lengths, device=tokens.device)[:, None]
        return tokens[keep]

    def encode_audio(self, input_features: torch.Tensor, input_features_mask: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's states of every window: `(windows, 1500, d_model)` over the whole
        30 s window, or with `encode_padding=False` over the real frames only (`encode_real_frames`)."""
        input_features = input_features.to(self.audio_tower.conv1.weight.dtype)
        if self.config.encode_padding:
            return self.audio_tower(input_features).last_hidden_state
        return encode_real_frames(self.audio_tower, input_features, input_features_mask.sum(-1))

    def encoder_frames_needed(self, input_features_mask: torch.Tensor) -> list[int]:
        """Encoder frames each window's audio tokens are made of. The last token's stack of
        `audio_downsample` frames may reach past the real audio (never past the window); with
        `encode_padding=False` the frames there are zeros, so only the real ones are needed."""
        if not self.config.encode_padding:
            return [encoder_frames(int(n)) for n in input_features_mask.sum(-1).tolist()]
        frames = self.config.audio_config.max_source_positions
        k = self.config.audio_downsample
        return [min(tokens * k, frames) for tokens in self.audio_token_lengths(input_features_mask)]

    def _check_encoder_states(self, states: torch.Tensor, input_features_mask: torch.Tensor) -> torch.Tensor:
        for index, needed in enumerate(self.encoder_frames_needed(input_features_mask)):
            if states.shape[1] < needed:
                raise ValueError(
                    f"audio_encoder_states window {index} has {states.shape[1]} frames; its audio needs the first {needed}"
                )
        return states.to(self.audio_projector.linear_1.weight.dtype)

    @staticmethod
    def _is_prefill(kwargs: dict) -> bool:
        # Compiled decoding (static cache) never runs the prefill, and asking a static cache for
        # its length there would break the graph on a data-dependent branch.
        if torch.compiler.is_compiling():
            return False
        # The KV cache is `cache` from transformers 5.24 on, `past_key_values` before: it travels in
        # kwargs under whichever name generate used, so the parent gets it as it expects.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        return cache is None or cache.get_seq_length() == 0

    def get_audio_placeholder_mask(self, input_ids: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """`(batch, seq)` mask of `<|AUDIO|>` positions; raises if their count differs from the features'."""
        mask = input_ids == self.config.audio_token_id
        n_tokens, n_features = int(mask.sum()), audio_features.shape[0]
        if n_tokens != n_features:
            raise ValueError(
                f"Audio features and <|AUDIO|> tokens do not match: the prompt holds {n_tokens} <|AUDIO|> "
                f"tokens but the audio gives {n_features} features"
            )
        return mask

    def forward(
        self,
        input_ids=None,
        input_features=None,
        input_features_mask=None,
        inputs_embeds=None,
        pixel_values=None,
        pixel_values_videos=None,
        audio_encoder_states=None,
        **kwargs,
    ):
        if self.visual is None and (pixel_values is not None or pixel_values_videos is not None):
            raise ValueError("This model was built with use_vision_tower=False: it takes no images or video")
        if input_features is not None and audio_encoder_states is not None:
            raise ValueError("Pass input_features or audio_encoder_states, not both")
        if input_features is not None or audio_encoder_states is not None:
            if input_ids is None:
                raise ValueError("input_features need input_ids, to find the <|AUDIO|> positions")
            if inputs_embeds is None:
                inputs_embeds = self.get_input_embeddings()(input_ids)
            audio_features = self.get_audio_features(input_features, input_features_mask, audio_encoder_states)
            mask = self.get_audio_placeholder_mask(input_ids, audio_features)
            audio_features = audio_features.to(inputs_embeds.device, inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), audio_features)
        elif input_ids is not None and self._is_prefill(kwargs):
            n_tokens = int((input_ids == self.config.audio_token_id).sum())
            if n_tokens:
                raise ValueError(f"The prompt holds {n_tokens} <|AUDIO|> tokens but no input_features were given")
        return super().forward(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            **kwargs,
        )


class Qwen2AudioGraftForConditionalGeneration(Qwen2AudioGraftPreTrainedModel, Qwen2VLForConditionalGeneration):
    """`Qwen2VLForConditionalGeneration` whose `forward`/`generate` also take `input_features` and
    `input_features_mask`. `generate` accepts right- or left-padded batches (it left-pads inside).
    In training mode with `labels`, logits are computed only at the labelled (answer) positions."""

    def __init__(self, config: Qwen2AudioGraftConfig):
        Qwen2VLPreTrainedModel.__init__(self, config)
        self.model = Qwen2AudioGraftModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_audio_features(self, input_features=None, input_features_mask=None, audio_encoder_states=None):
        return self.model.get_audio_features(input_features, input_features_mask, audio_encoder_states)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        pixel_values=None,
        pixel_values_videos=None,
        image_grid_thw=None,
        video_grid_thw=None,
        mm_token_type_ids=None,
        logits_to_keep=0,
        input_features=None,
        input_features_mask=None,
        audio_encoder_states=None,
        **kwargs,
    ):
        # Named in full because `generate` validates its inputs against this signature. The
        # parent hands unknown keyword arguments on to `self.model`, which consumes the audio.
        # The KV cache is left to kwargs: its name changed in transformers 5.24 (`cache`, was
        # `past_key_values`), and naming either here would send the parent both.
        if self._beam_groups > 1 and input_features is not None and self.model._is_prefill(kwargs):
            return self._prefill_once_per_clip(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache,
                mm_token_type_ids=mm_token_type_ids, logits_to_keep=logits_to_keep, input_features=input_features,
                input_features_mask=input_features_mask, **kwargs,
            )  # fmt: skip
        if input_features is not None or audio_encoder_states is not None:
            kwargs.update(input_features=input_features, input_features_mask=input_features_mask,
                          audio_encoder_states=audio_encoder_states)  # fmt: skip
        model_inputs = dict(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            inputs_embeds=inputs_embeds, use_cache=use_cache,
            pixel_values=pixel_values, pixel_values_videos=pixel_values_videos, image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw, mm_token_type_ids=mm_token_type_ids, **kwargs,
        )  # fmt: skip
        if labels is not None and self.training:
            return self.answer_loss(labels, **model_inputs)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            # The last positions as an index, not the parent's slice: `hidden_states[:, -k:]` is a strided
            # view, and torch's CPU bf16 matmul of a strided 3-D input by frozen weights takes a slow
            # reference path (pytorch/pytorch#151934; measured in bench/RESULTS.md). An index gathers the
            # rows into a contiguous tensor; same logits.
            positions = input_ids if input_ids is not None else inputs_embeds
            length = positions.shape[1]
            logits_to_keep = torch.arange(max(length - logits_to_keep, 0), length, device=positions.device)
        return super().forward(labels=labels, logits_to_keep=logits_to_keep, **model_inputs)

    def answer_loss(self, labels, num_items_in_batch=None, **inputs) -> CausalLMOutputWithPast:
        """The loss with `lm_head` applied only where a label is set (the answer tokens), in any mode:
        what `forward` returns in training. The vocabulary projection of prompt and audio positions
        is never computed. The loss equals the parent's; `logits` holds only the answer positions,
        `(answer tokens, vocab)`. Evaluation that needs the loss alone (the listening check) calls it:
        in eval mode `forward` gives the parent's logits at every position."""
        outputs = self.model(**inputs)
        hidden = outputs.last_hidden_state[:, :-1]  # position t predicts token t + 1
        targets = labels[:, 1:].to(hidden.device)
        answer = targets != -100
        logits = self.lm_head(hidden[answer]).float()  # (answer tokens, vocab)
        loss = nn.functional.cross_entropy(logits, targets[answer], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """`GenerationMixin.generate`, taking `input_features` / `input_features_mask` too."""
        if input_ids is not None and attention_mask is not None:
            # Stable sort puts padding (0) before real tokens (1) and keeps each group's order:
            # right padding becomes left padding, which decoder-only generation needs.
            order = torch.argsort(attention_mask.to(torch.int8), dim=1, stable=True)
            input_ids = input_ids.gather(1, order)
            if kwargs.get("mm_token_type_ids") is not None:
                kwargs["mm_token_type_ids"] = kwargs["mm_token_type_ids"].gather(1, order)
            attention_mask = attention_mask.gather(1, order)
        self._beam_groups = self._rows_per_clip(input_ids, kwargs)
        try:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            self._beam_groups = 1

    # Beams (or returned sequences) per clip while `generate` runs with them; 1 otherwise.
    _beam_groups = 1

    def _rows_per_clip(self, input_ids, kwargs: dict) -> int:
        """How many identical rows `generate` will make of each clip (its beams) where their prompt can be
        read once per clip: the audio as log-mel windows, no images, video or embeddings, a dynamic cache
        started empty and no per-layer outputs asked for. 1 otherwise (`generate` then reads every row)."""
        config = kwargs.get("generation_config") or self.generation_config

        def setting(name):  # a generate argument, else the generation config's
            return kwargs.get(name, getattr(config, name, None))

        rows = max(setting("num_beams") or 1, setting("num_return_sequences") or 1)
        others = ("inputs_embeds", "pixel_values", "pixel_values_videos", "audio_encoder_states", "cache",
                  "past_key_values", "assistant_model", "prefill_chunk_size", "cache_implementation",
                  "output_hidden_states", "output_attentions")  # fmt: skip
        asked = [setting(name) for name in others]  # tensors among them: compared by identity
        if input_ids is None or kwargs.get("input_features") is None or any(v is not None and v is not False for v in asked):
            return 1
        return rows

    def _prefill_once_per_clip(self, input_ids, attention_mask, position_ids, logits_to_keep, **kwargs):
        """The prompt's pass of a beam search with one row per clip instead of one per beam, the cache and
        logits then repeated for each beam: the beams of a clip share their prompt, so they read it once.

        `generate` has repeated each prompt row `_beam_groups` times (its audio windows were left as they
        were); the encoder and the LLM run over every `_beam_groups`-th row."""
        groups, first = self._beam_groups, slice(None, None, self._beam_groups)
        if position_ids is None or input_ids.shape[0] % groups:
            raise ValueError(f"a beam prefill needs position_ids and {groups} rows a clip, got "
                             f"{None if position_ids is None else tuple(position_ids.shape)} for {input_ids.shape[0]} rows")
        if kwargs.get("mm_token_type_ids") is not None:
            kwargs["mm_token_type_ids"] = kwargs["mm_token_type_ids"][first]
        self._beam_groups = 1
        try:
            out = self(input_ids=input_ids[first], attention_mask=None if attention_mask is None else attention_mask[first],
                       position_ids=position_ids[..., first, :], logits_to_keep=logits_to_keep, **kwargs)  # fmt: skip
        finally:
            self._beam_groups = groups
        # `cache` from transformers 5.24 on, `past_key_values` before (asking 5.24 for it logs a deprecation)
        cache = out["cache"] if "cache" in out.keys() else out["past_key_values"]
        cache.batch_repeat_interleave(groups)
        out["logits"] = out.logits.repeat_interleave(groups, dim=0)
        return out

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        # Windows are laid out per clip, not per row, so the generic batch-axis repeat would pair
        # rows with the wrong windows when a clip spans several windows: repeat each row's windows.
        # Where the prompt is read once per clip (`_rows_per_clip`), they stay one set per clip.
        features = model_kwargs.pop("input_features", None)
        features_mask = model_kwargs.pop("input_features_mask", None)
        if features is not None and expand_size > 1 and self._beam_groups == 1:
            index = self._windows_by_row(input_ids, features_mask, expand_size)
            features, features_mask = features[index], features_mask[index]
        expanded_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        if features is not None:
            model_kwargs.update(input_features=features, input_features_mask=features_mask)
        return expanded_ids, model_kwargs

    def _windows_by_row(self, input_ids, features_mask, expand_size) -> torch.Tensor:
        """Window indices with each row's windows repeated `expand_size` times, rows in order."""
        window_tokens = self.model.audio_token_lengths(features_mask)
        row_tokens = (input_ids == self.config.audio_token_id).sum(-1).tolist()
        index, window = [], 0
        for tokens in row_tokens:
            first = window
            while tokens > 0 and window < len(window_tokens):
                tokens -= window_tokens[window]
                window += 1
            if tokens != 0:
                raise ValueError("The <|AUDIO|> tokens of a row do not match whole audio windows")
            index.extend(list(range(first, window)) * expand_size)
        return torch.tensor(index, dtype=torch.long, device=features_mask.device)


Qwen2AudioGraftForConditionalGeneration.register_for_auto_class("AutoModel")

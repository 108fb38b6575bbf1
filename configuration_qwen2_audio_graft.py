"""Configuration of the Qwen2-VL + Whisper-encoder audio graft.

The graft is Qwen2-VL with one more modality: audio -> Whisper encoder (`audio_config`) ->
`audio_projector` -> the Qwen2-VL language model. Everything Qwen2-VL configures (text model,
vision tower, image/video token ids) is inherited unchanged; this file adds the audio fields and
the one function that says how many LLM tokens a clip becomes (`num_audio_tokens`).
"""

from transformers import Qwen2VLConfig, WhisperConfig

# Whisper's fixed front end: 16 kHz audio, a mel frame every 160 samples, 30 s windows
# (3000 mel frames, which the encoder's stride-2 convolution turns into 1500 frames).
SAMPLING_RATE = 16000
HOP_LENGTH = 160
WINDOW_SECONDS = 30
WINDOW_SAMPLES = SAMPLING_RATE * WINDOW_SECONDS
PROJECTOR_TYPES = ("linear", "mlp")
AUDIO_DOWNSAMPLES = (1, 2, 4, 8)


def _ceil_div(a, b):
    return -(-a // b)


def encoder_frames(mel_frames):
    """Encoder frames of `mel_frames` mel frames (an int or an integer tensor): Whisper's second
    convolution (kernel 3, stride 2, padding 1) halves them, rounding up."""
    return _ceil_div(mel_frames, 2)


def _window_tokens(num_samples: int, audio_downsample: int) -> int:
    return _ceil_div(encoder_frames(_ceil_div(num_samples, HOP_LENGTH)), audio_downsample)


def num_audio_tokens(num_samples: int, audio_downsample: int = 1) -> int:
    """How many `<|AUDIO|>` tokens a 16 kHz clip of `num_samples` samples becomes.

    The clip is cut into 30 s windows; each window costs one token per `audio_downsample`
    encoder frames of *real* audio (50 encoder frames per second), rounded up, and nothing
    for the padding that fills the window to 30 s. So 2 s cost 100 tokens at downsample 1,
    30 s cost 1500, and 70 s cost 1500 + 1500 + 500.

    This is the only place the count is computed: the processor expands placeholders with
    it and the model checks features against it (through the mel-frame mask).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if audio_downsample not in AUDIO_DOWNSAMPLES:
        raise ValueError(f"audio_downsample must be one of {AUDIO_DOWNSAMPLES}, got {audio_downsample}")
    full_windows, rest = divmod(num_samples, WINDOW_SAMPLES)
    tokens = full_windows * _window_tokens(WINDOW_SAMPLES, audio_downsample)
    if rest:
        tokens += _window_tokens(rest, audio_downsample)
    return tokens


class Qwen2AudioGraftConfig(Qwen2VLConfig):
    r"""Qwen2-VL configuration plus a Whisper audio encoder and an audio projector.

    Differs from [`Qwen2VLConfig`] only by the fields below; `text_config`, `vision_config` and
    the vision token ids mean what they mean there.

    Args:
        audio_config (`dict` or `WhisperConfig`, *optional*):
            Configuration of the Whisper model whose encoder is the audio tower (only the
            encoder fields are used: `d_model`, `encoder_layers`, `encoder_attention_heads`,
            `num_mel_bins`, `max_source_positions`, ...). Defaults to whisper-large-v3-turbo's
            encoder (1280-d, 32 layers, 20 heads, 128 mel bins).
        audio_bos_token_id (`int`, *optional*, defaults to 151657):
            Id of `<|audio_bos|>`, which opens every clip in a prompt.
        audio_token_id (`int`, *optional*, defaults to 151658):
            Id of `<|AUDIO|>`, the placeholder replaced by projected audio features. The
            processor writes exactly `num_audio_tokens(len(clip))` of them per clip.
        audio_eos_token_id (`int`, *optional*, defaults to 151659):
            Id of `<|audio_eos|>`, which closes every clip in a prompt.
        projector_type (`str`, *optional*, defaults to `"linear"`):
            `"linear"` (one linear layer, as in the reference model) or `"mlp"` (linear, GELU,
            linear) from the stacked encoder frames to the LLM width.
        projector_norm (`bool`, *optional*, defaults to `True`):
            End the projector with an RMSNorm whose gain starts at the LLM's embedding RMS, so
            audio embeddings sit on the scale of the text embeddings around them however far
            training moves the linear weights. `False` is the reference model's bare projector.
        audio_downsample (`int`, *optional*, defaults to 1):
            How many consecutive encoder frames (20 ms each) are stacked into one LLM token: 1
            gives 50 tokens per second of audio (the reference model), 2 gives 25, 4 gives 12.5,
            8 gives 6.25.
        encode_padding (`bool`, *optional*, defaults to `True`):
            Run the Whisper encoder over each whole 30 s window, padding included (Whisper's own
            way, and the reference model's). `False` encodes only the real audio frames of each
            window (`encode_real_frames`): a 2 s clip then costs the encoder 1/15 of a window.
            The encoder's outputs differ between the two, so the projector must be trained with
            the setting it is used with.
        max_audio_seconds (`float`, *optional*, defaults to 300.0):
            The longest clip accepted; longer clips raise `ValueError` instead of being cut.
        use_vision_tower (`bool`, *optional*, defaults to `True`):
            Build the Qwen2-VL vision tower. `False` leaves it out (and its weights unloaded)
            for audio-only use; images then raise `ValueError`.
    """

    model_type = "qwen2_audio_graft"
    # transformers <= 5.17 reads `sub_configs`; newer versions read `sub_configs_defaults`.
    sub_configs = {**Qwen2VLConfig.sub_configs, "audio_config": WhisperConfig}
    sub_configs_defaults = {**getattr(Qwen2VLConfig, "sub_configs_defaults", {}), "audio_config": WhisperConfig}

    audio_config: dict | WhisperConfig | None = None
    audio_bos_token_id: int = 151657
    audio_token_id: int = 151658
    audio_eos_token_id: int = 151659
    projector_type: str = "linear"
    projector_norm: bool = True
    audio_downsample: int = 1
    encode_padding: bool = True
    max_audio_seconds: float = 300.0
    use_vision_tower: bool = True

    def __post_init__(self, **kwargs):
        if self.audio_config is None:
            self.audio_config = whisper_large_v3_turbo_config()
        elif isinstance(self.audio_config, dict):
            self.audio_config = WhisperConfig(**{k: v for k, v in self.audio_config.items() if k != "model_type"})
        if self.projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"projector_type must be one of {PROJECTOR_TYPES}, got {self.projector_type!r}")
        if not isinstance(self.projector_norm, bool):
            raise ValueError(f"projector_norm must be true or false, got {self.projector_norm!r}")
        if self.audio_downsample not in AUDIO_DOWNSAMPLES:
            raise ValueError(f"audio_downsample must be one of {AUDIO_DOWNSAMPLES}, got {self.audio_downsample}")
        if not isinstance(self.encode_padding, bool):
            raise ValueError(f"encode_padding must be true or false, got {self.encode_padding!r}")
        if not self.max_audio_seconds > 0:
            raise ValueError(f"max_audio_seconds must be positive, got {self.max_audio_seconds}")
        super().__post_init__(**kwargs)

    @property
    def max_audio_samples(self) -> int:
        return int(self.max_audio_seconds * SAMPLING_RATE)

    def num_audio_tokens(self, num_samples: int) -> int:
        """`num_audio_tokens` at this config's `audio_downsample`."""
        return num_audio_tokens(num_samples, self.audio_downsample)


def whisper_large_v3_turbo_config() -> WhisperConfig:
    """The encoder half of whisper-large-v3-turbo (its 4-layer decoder is never built here)."""
    return WhisperConfig(
        d_model=1280,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_layers=4,
        decoder_attention_heads=20,
        decoder_ffn_dim=5120,
        num_mel_bins=128,
        max_source_positions=1500,
        vocab_size=51866,
    )


Qwen2AudioGraftConfig.register_for_auto_class()

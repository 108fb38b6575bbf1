"""Processor of the Qwen2-VL + Whisper-encoder audio graft.

`processor(text=..., audio=..., sampling_rate=...)` turns clips of any rate, dtype and channel
count into 30 s Whisper windows, and expands each `<|AUDIO|>` placeholder of the text into
exactly `num_audio_tokens(len(clip))` tokens: real audio only, never padding.
"""

import re

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .configuration_qwen2_audio_graft import HOP_LENGTH, SAMPLING_RATE, WINDOW_SAMPLES, num_audio_tokens

AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS_TOKEN = "<|audio_bos|>"
AUDIO_EOS_TOKEN = "<|audio_eos|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def chat_template(default_system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """Qwen2-VL's chat format, with `{"type": "audio"}` items written as one audio placeholder. A conversation
    that does not open with a system message gets `default_system_prompt` as one (Qwen2-VL's own rule); with
    None it gets no system block, 11 tokens fewer. Video items never reach it: `apply_chat_template` refuses
    them (the processor has no video path)."""
    if default_system_prompt is not None and ("{" in default_system_prompt or "<|" in default_system_prompt):
        raise ValueError(f"default_system_prompt holds template or special-token syntax: {default_system_prompt!r}")
    system = ("{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n" + default_system_prompt
              + "<|im_end|>\n{% endif %}") if default_system_prompt is not None else ""  # fmt: skip
    return (
        "{% for message in messages %}"
        + system
        + "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        "{% if item['type'] == 'audio' or 'audio' in item %}<|audio_bos|><|AUDIO|><|audio_eos|>"
        "{% elif item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif 'text' in item %}{{ item['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


CHAT_TEMPLATE = chat_template()


def to_float_mono(clip, index: int) -> np.ndarray:
    """One clip as float32 mono samples in [-1, 1]; bad input raises naming the clip."""
    if isinstance(clip, torch.Tensor):
        clip = clip.detach().cpu().numpy()
    if not isinstance(clip, np.ndarray):
        raise TypeError(f"audio clip {index} must be a numpy array or torch tensor, got {type(clip).__name__}")
    if clip.dtype.kind == "f":
        samples = clip.astype(np.float32)
    elif clip.dtype.kind == "i":
        samples = clip.astype(np.float32) / float(2 ** (8 * clip.dtype.itemsize - 1))
    elif clip.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        samples = (clip.astype(np.float32) - 128.0) / 128.0
    else:
        raise TypeError(f"audio clip {index} must hold float or integer samples, got dtype {clip.dtype}")
    if samples.ndim == 2:
        # Channels are the short axis: (channels, samples) or (samples, channels).
        samples = samples.mean(axis=int(np.argmin(samples.shape)))
    if samples.ndim != 1:
        raise ValueError(
            f"audio clip {index} must be 1-D (samples) or 2-D (channels and samples), got shape {clip.shape}"
        )
    if samples.size == 0:
        raise ValueError(f"audio clip {index} is empty")
    if not np.isfinite(samples).all():
        raise ValueError(f"audio clip {index} holds NaN or infinite samples")
    return samples


def resample_to_16k(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    if sampling_rate == SAMPLING_RATE:
        return samples
    try:
        import librosa
    except ImportError as error:
        raise ImportError(f"Resampling {sampling_rate} Hz audio to {SAMPLING_RATE} Hz needs librosa: pip install librosa") from error
    return librosa.resample(samples, orig_sr=sampling_rate, target_sr=SAMPLING_RATE).astype(np.float32)


class Qwen2AudioGraftProcessor(ProcessorMixin):
    r"""Whisper feature extractor + Qwen2 tokenizer + Qwen2-VL image processor.

    Args:
        feature_extractor (`WhisperFeatureExtractor`): makes the 30 s log-mel windows.
        tokenizer (`Qwen2Tokenizer`): must know `<|audio_bos|>`, `<|AUDIO|>` and `<|audio_eos|>`.
        image_processor (`Qwen2VLImageProcessor`): the PIL one works without torchvision.
        audio_downsample (`int`): must equal the model config's; sets the tokens per clip.
        max_audio_seconds (`float`): longer clips raise `ValueError`.
        chat_template (`str`): Qwen2-VL's chat format with audio items.
    """

    def __init__(
        self,
        feature_extractor=None,
        tokenizer=None,
        image_processor=None,
        audio_downsample=1,
        max_audio_seconds=300.0,
        chat_template=None,
    ):
        self.audio_downsample = audio_downsample
        self.max_audio_seconds = max_audio_seconds
        super().__init__(feature_extractor, tokenizer, image_processor, chat_template=chat_template or CHAT_TEMPLATE)

    def __call__(self, text=None, audio=None, images=None, sampling_rate=None, return_tensors="pt",
                 audio_features: bool = True, **text_kwargs):  # fmt: skip
        """Tokenize `text` (a string or a batch of strings) with the audio and images it refers to.

        Args:
            text: prompts; each `<|AUDIO|>` stands for the next clip of `audio`, in order.
            audio: one clip or a list of clips (numpy arrays or tensors; float or int samples;
                mono, or 2-D with a channel axis), all at `sampling_rate`.
            images: images for the `<|image_pad|>` placeholders, in order.
            sampling_rate: the rate of `audio` in Hz; required with audio, resampled to 16 kHz.
            audio_features: False leaves out `input_features` and returns only `input_features_mask`,
                without computing any log-mel: for callers that already hold the encoder's outputs
                (training from stored encoder states).
            **text_kwargs: passed to the tokenizer (padding defaults to True).
        Returns:
            `BatchFeature` with `input_ids`, `attention_mask`, `mm_token_type_ids` and, with audio,
            `input_features` `(windows, mel_bins, 3000)` and `input_features_mask` `(windows, 3000)`;
            with images, `pixel_values` and `image_grid_thw`.
        """
        if text is None:
            raise ValueError("text is required: write one <|AUDIO|> where each clip goes")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        data = {}
        if audio is not None:
            clips = self._prepare_audio(audio, sampling_rate)
            texts = self._expand(texts, AUDIO_TOKEN, [num_audio_tokens(len(c), self.audio_downsample) for c in clips])
            data.update(self.audio_windows(clips, features=audio_features))
        else:
            self._expand(texts, AUDIO_TOKEN, [])
        if images is not None:
            image_inputs = self.image_processor(images=images, return_tensors="pt")
            merge = self.image_processor.merge_size**2
            counts = [int(grid.prod()) // merge for grid in image_inputs["image_grid_thw"]]
            texts = self._expand(texts, IMAGE_TOKEN, counts)
            data.update(image_inputs)
        text_kwargs.setdefault("padding", True)
        text_inputs = self.tokenizer(texts, return_tensors=return_tensors, **text_kwargs)
        data.update(text_inputs)
        data["mm_token_type_ids"] = [self._token_types(ids) for ids in text_inputs["input_ids"]]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _prepare_audio(self, audio, sampling_rate) -> list[np.ndarray]:
        if sampling_rate is None:
            raise ValueError(f"sampling_rate is required with audio (the rate of the clips in Hz, e.g. {SAMPLING_RATE})")
        if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive integer in Hz, got {sampling_rate!r}")
        clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        prepared = []
        for index, clip in enumerate(clips):
            samples = resample_to_16k(to_float_mono(clip, index), int(sampling_rate))
            seconds = len(samples) / SAMPLING_RATE
            if seconds > self.max_audio_seconds:
                raise ValueError(
                    f"audio clip {index} is {seconds:.1f} s long; the longest accepted is "
                    f"{self.max_audio_seconds:g} s (max_audio_seconds)"
                )
            prepared.append(samples)
        return prepared

    def audio_windows(self, clips: list[np.ndarray], features: bool = True) -> dict:
        """Every clip (16 kHz float mono) cut into 30 s windows, all windows of the batch in order:
        `input_features` `(windows, mel_bins, 3000)` and `input_features_mask` `(windows, 3000)`.
        With `features=False`, only the mask (its first `ceil(samples / 160)` frames of each window are
        1, as the feature extractor marks them), and no log-mel is computed."""
        windows = [clip[start : start + WINDOW_SAMPLES] for clip in clips for start in range(0, len(clip), WINDOW_SAMPLES)]
        if not features:
            mask = torch.zeros((len(windows), WINDOW_SAMPLES // HOP_LENGTH), dtype=torch.int32)
            for row, window in zip(mask, windows):
                row[: -(-len(window) // HOP_LENGTH)] = 1
            return {"input_features_mask": mask}
        extracted = self.feature_extractor(
            windows,
            sampling_rate=SAMPLING_RATE,
            padding="max_length",  # the Whisper encoder only takes full 3000-frame windows
            max_length=WINDOW_SAMPLES,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return {"input_features": extracted["input_features"], "input_features_mask": extracted["attention_mask"]}

    @staticmethod
    def _expand(texts: list[str], token: str, counts: list[int]) -> list[str]:
        """Replace the i-th `token` of the batch by `counts[i]` copies; the numbers must agree."""
        found = sum(t.count(token) for t in texts)
        if found != len(counts):
            kind = "audio clips" if token == AUDIO_TOKEN else "images"
            raise ValueError(f"The text holds {found} {token} placeholders but {len(counts)} {kind} were given")
        remaining = iter(counts)
        pattern = re.compile(re.escape(token))
        return [pattern.sub(lambda _: token * next(remaining), t) for t in texts]

    def _token_types(self, input_ids) -> list[int]:
        # Qwen2-VL's M-RoPE types: 0 text, 1 image, 2 video. Audio takes ordinary text positions.
        image_id, video_id = (self.tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_TOKEN, VIDEO_TOKEN))
        ids = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
        return [1 if i == image_id else 2 if i == video_id else 0 for i in ids]

    def apply_chat_template(self, conversation, *args, **kwargs):
        """Qwen2-VL's chat template with audio items; a video item raises `ValueError` (there is no
        video path: Qwen2-VL's video processor needs torchvision)."""
        conversations = conversation if conversation and isinstance(conversation[0], (list, tuple)) else [conversation]
        for messages in conversations:
            for message in messages:
                content = message.get("content") if isinstance(message, dict) else None
                for item in content if isinstance(content, (list, tuple)) else []:
                    if isinstance(item, dict) and (item.get("type") == "video" or "video" in item):
                        raise ValueError("This processor takes no video: send frames as images, or audio and text")
        return super().apply_chat_template(conversation, *args, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return [
            "input_ids",
            "attention_mask",
            "mm_token_type_ids",
            "input_features",
            "input_features_mask",
            "pixel_values",
            "image_grid_thw",
        ]


Qwen2AudioGraftProcessor.register_for_auto_class()

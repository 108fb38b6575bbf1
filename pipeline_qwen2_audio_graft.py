"""The `automatic-speech-recognition` pipeline class of the audio graft.

`pipeline("automatic-speech-recognition", model=repo, trust_remote_code=True)` loads this class
through `custom_pipelines` in config.json: the stock ASR pipeline treats any model it does not
know as CTC. This one decodes files without an ffmpeg binary (libsndfile via soundfile), takes
arrays, `{"raw"|"array", "sampling_rate"}` dicts and lists of them, batches clips of different
lengths, and transcribes audio longer than 30 s whole: all its windows go into one prompt.
"""

import io

import numpy as np
import torch
from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

from .processing_qwen2_audio_graft import SAMPLING_RATE, to_float_mono, resample_to_16k

DEFAULT_INSTRUCTION = "Transcribe this audio."


def build_prompt(processor, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The chat prompt for one clip followed by `instruction`, ready for generation."""
    messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": instruction}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _read_audio_file(source) -> tuple[np.ndarray, int]:
    try:
        import soundfile
    except ImportError as error:
        raise ImportError("Reading audio files needs soundfile: pip install soundfile") from error
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    samples, sampling_rate = soundfile.read(data, dtype="float32", always_2d=False)
    return samples, sampling_rate


class Qwen2AudioGraftASRPipeline(AutomaticSpeechRecognitionPipeline):
    """ASR pipeline for the graft: prompt + audio in, generated text out.

    Decoding is deterministic: beam search of the width the model's `generation_config.num_beams`
    sets (1, greedy, where it sets none), no sampling. Call arguments: `prompt` (an instruction
    replacing "Transcribe this audio.", e.g. a request to translate), `max_new_tokens`, and
    `generate_kwargs` (a dict for `model.generate`, over those defaults).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.type = "seq2seq"  # the parent guessed "ctc" for a class it does not know

    def _sanitize_parameters(self, prompt=None, max_new_tokens=None, generate_kwargs=None, **unexpected):
        if unexpected:
            raise TypeError(f"Unexpected arguments for the audio graft pipeline: {sorted(unexpected)}")
        forward_params = {"generate_kwargs": dict(generate_kwargs or {})}
        if max_new_tokens is not None:
            forward_params["generate_kwargs"]["max_new_tokens"] = max_new_tokens
        preprocess_params = {} if prompt is None else {"prompt": prompt}
        return preprocess_params, forward_params, {}

    def preprocess(self, inputs, prompt=DEFAULT_INSTRUCTION):
        samples, sampling_rate = self._load(inputs)
        # Resampled here so that a batch of clips from different sources shares one rate.
        samples = resample_to_16k(to_float_mono(samples, 0), sampling_rate)
        yield {"is_last": True, "audio": samples, "prompt": build_prompt(self.processor, prompt)}

    def _load(self, inputs) -> tuple:
        if isinstance(inputs, (str, bytes)):
            return _read_audio_file(inputs)
        if isinstance(inputs, dict):
            samples = inputs.get("raw", inputs.get("array"))
            if samples is None or "sampling_rate" not in inputs:
                raise ValueError(
                    'An audio dict needs "raw" (or "array") samples and "sampling_rate", '
                    f"got keys {sorted(inputs)}"
                )
            return samples, inputs["sampling_rate"]
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return inputs, SAMPLING_RATE  # like the stock pipeline: a bare array is taken as 16 kHz
        raise TypeError(
            f"Expected a file path, bytes, an array or a {{'raw', 'sampling_rate'}} dict, got {type(inputs).__name__}"
        )

    def _forward(self, model_inputs, generate_kwargs=None):
        clips, prompts = model_inputs["audio"], model_inputs["prompt"]
        is_last = model_inputs["is_last"]
        if isinstance(prompts, str):  # batch_size=1 gives one item, larger batches give lists
            clips, prompts = [clips], [prompts]
        inputs = self.processor(text=prompts, audio=clips, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        kwargs = {"do_sample": False, "num_beams": getattr(self.model.generation_config, "num_beams", None) or 1,
                  "max_new_tokens": 256}  # fmt: skip
        kwargs.update(getattr(self, "_generate_kwargs", None) or {})
        kwargs.update(generate_kwargs or {})
        sequences = self.model.generate(**inputs, **kwargs)
        return {"tokens": sequences[:, inputs["input_ids"].shape[1] :], "is_last": is_last}

    def postprocess(self, model_outputs):
        # One item per input (long audio is one prompt, not chunks), kept general all the same.
        texts = [self.processor.batch_decode(output["tokens"], skip_special_tokens=True)[0] for output in model_outputs]
        return {"text": " ".join(text.strip() for text in texts)}

"""The `automatic-speech-recognition` pipeline class of the audio graft.

`pipeline("automatic-speech-recognition", model=repo, trust_remote_code=True)` loads this class
through `custom_pipelines` in config.json: the stock ASR pipeline treats any model it does not
know as CTC. This one decodes every audio and video file FFmpeg reads (through PyAV, whose wheels
carry the FFmpeg libraries: no ffmpeg binary needed), takes arrays, `{"raw"|"array",
"sampling_rate"}` dicts and lists of them, batches clips of different lengths, finds speech with
Silero VAD (the frame-energy rule where `silero-vad` is not installed), and transcribes long
recordings in segments cut at pauses (or whole, in one prompt), with timestamps on request.
"""

import functools
import importlib.util
import io
import os
import re

import numpy as np
import torch
from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

from .processing_qwen2_audio_graft import SAMPLING_RATE, to_float_mono, resample_to_16k

DEFAULT_INSTRUCTION = "Transcribe this audio."
DEFAULT_SEGMENT_SECONDS = 10.0  # chosen on the long-form validation set (docs/mini-graft.md, "Long recordings")


def decoding_beams(generation_config) -> int:
    """The beam width the pipeline decodes with: the generation config's `num_beams`, 1 (greedy) where unset."""
    return getattr(generation_config, "num_beams", None) or 1


def build_prompt(processor, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The chat prompt for one clip followed by `instruction`, ready for generation."""
    messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": instruction}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# Long recordings are transcribed in segments cut at pauses. Speech is found by frame energy alone
# (numpy, nothing to install): 10 ms frames louder than both an absolute floor and a level relative to
# the recording's loud frames, widened a little so word edges stay in.
FRAME_SAMPLES = SAMPLING_RATE // 100
SILENCE_FLOOR_DBFS = -50.0    # frames quieter than this are silence whatever the recording
RELATIVE_THRESHOLD_DB = -25.0  # ... and those this far below the 95th-percentile frame energy
SPEECH_WIDENING_FRAMES = 5     # 50 ms kept on both sides of every speech frame
QUIET_WINDOW_FRAMES = 10       # where a segment must be cut inside speech: the quietest 100 ms


def frame_energy(samples: np.ndarray) -> np.ndarray:
    """The mean square of each whole 10 ms frame of 16 kHz `samples`: `(frames,)` float64."""
    frames = len(samples) // FRAME_SAMPLES
    return np.square(samples[: frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES), dtype=np.float64).mean(-1)


def speech_frames(samples: np.ndarray) -> np.ndarray:
    """Which 10 ms frames of 16 kHz `samples` hold speech: `(frames,)` booleans."""
    return _speech_in(frame_energy(samples))


def _speech_in(energy: np.ndarray) -> np.ndarray:
    """`speech_frames` of the frames whose `frame_energy` is `energy`."""
    if energy.size == 0:
        return np.zeros(0, dtype=bool)
    threshold = max(10 ** (SILENCE_FLOOR_DBFS / 10), np.percentile(energy, 95) * 10 ** (RELATIVE_THRESHOLD_DB / 10))
    loud = energy > threshold
    # widen: a frame is speech if any frame within SPEECH_WIDENING_FRAMES of it is loud
    kernel = np.ones(2 * SPEECH_WIDENING_FRAMES + 1)
    return np.convolve(loud.astype(np.float64), kernel, mode="same") > 0


def _runs(flags: np.ndarray) -> list[list[int]]:
    """[start, end) frame ranges of the True runs of `flags`."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _cut_long(region: list[int], energy: np.ndarray, longest: int) -> list[list[int]]:
    """A speech region over `longest` frames cut where it is quietest (100 ms windows) between a third of
    each `longest` stretch and its end: no pause to cut at, so the least loud place."""
    pieces, start, end = [], region[0], region[1]
    while end - start > longest:
        low, high = start + longest // 3, start + longest - QUIET_WINDOW_FRAMES
        window = np.convolve(energy[low:high + QUIET_WINDOW_FRAMES], np.ones(QUIET_WINDOW_FRAMES), mode="valid")
        cut = low + int(np.argmin(window)) + QUIET_WINDOW_FRAMES // 2
        pieces.append([start, cut])
        start = cut
    return pieces + [[start, end]]


def split_at_pauses(samples: np.ndarray, max_segment_seconds: float = DEFAULT_SEGMENT_SECONDS, min_pause_seconds: float = 0.3,
                    min_speech_seconds: float = 0.2, energy: np.ndarray | None = None,
                    speech: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Speech segments of 16 kHz `samples` as `(start, end)` sample offsets, each at most `max_segment_seconds`.

    Speech separated by a pause of `min_pause_seconds` or more is cut there; neighbouring pieces are
    joined again while the joined span fits `max_segment_seconds`. Speech longer than that with no
    such pause is cut at its quietest 100 ms. Pieces under `min_speech_seconds` of speech are dropped,
    so silence, clicks and noise bursts give no segment. A recording without speech gives `[]`.
    `energy` and `speech`: the recording's `frame_energy` and `speech_frames`, where the caller has
    computed them already."""
    if not max_segment_seconds > 0 or max_segment_seconds > 30:
        raise ValueError(f"max_segment_seconds must be above 0 and at most 30 (one Whisper window), got {max_segment_seconds}")
    energy = frame_energy(samples) if energy is None else energy
    speech = _speech_in(energy) if speech is None else speech
    pause, longest = round(min_pause_seconds * 100), round(max_segment_seconds * 100)
    regions: list[list[int]] = []
    for run in _runs(speech):
        if regions and run[0] - regions[-1][1] < pause:
            regions[-1][1] = run[1]  # a gap shorter than a pause is inside speech
        else:
            regions.append(run)
    pieces = [p for r in regions if r[1] - r[0] >= min_speech_seconds * 100 for p in _cut_long(r, energy, longest)]
    segments: list[list[int]] = []
    for piece in pieces:
        if segments and piece[1] - segments[-1][0] <= longest:
            segments[-1][1] = piece[1]
        else:
            segments.append(piece)
    return [(start * FRAME_SAMPLES, min(end * FRAME_SAMPLES, len(samples))) for start, end in segments]


# Within a segment, `return_timestamps=True` times each sentence of the text: the segment's own pauses
# (runs of non-speech frames) are matched to the sentence ends, in order, near where the sentence's
# share of the characters puts them.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
MIN_SENTENCE_GAP_FRAMES = 5  # a gap of 50 ms between (widened) speech frames: a pause of about 0.15 s


def pauses_within(speech: np.ndarray, start: int, end: int) -> list[tuple[float, float]]:
    """The (start, end) seconds of the gaps of `MIN_SENTENCE_GAP_FRAMES` or more between speech frames
    inside frames [start, end) of `speech` (`speech_frames`'s flags)."""
    gaps = _runs(~speech[start:end])
    return [((start + a) / 100, (start + b) / 100) for a, b in gaps
            if a > 0 and b < end - start and b - a >= MIN_SENTENCE_GAP_FRAMES]  # fmt: skip


def sentence_chunks(text: str, span: tuple[float, float], pauses: list[tuple[float, float]]) -> list[dict]:
    """The sentences of a segment's `text`, each with its (start, end) seconds inside `span`.

    Each sentence end is expected where the sentences before it take their share of the characters;
    the pauses are matched to the ends in order (dynamic programming), each pause scoring its length
    times a Gaussian of its distance from the expected place (sigma a fifth of the segment). An end
    with no pause near enough (sentences read back to back) is placed at the expected place."""
    sentences = [s for s in SENTENCE_END.split(text.strip()) if s]
    if len(sentences) < 2:
        return [{"text": text.strip(), "timestamp": span}]
    begin, finish = span
    sigma = max(0.2 * (finish - begin), 0.5)
    lengths = np.cumsum([len(s) + 1 for s in sentences])
    expected = [begin + (finish - begin) * n / lengths[-1] for n in lengths[:-1]]

    ends, pauses = len(expected), sorted(pauses)
    # gain[j][i]: pause i as end j, its length times the Gaussian of its distance (0 where under 0.01)
    gain = [[(b - a) * np.exp(-(((a + b) / 2 - at) / sigma) ** 2) for a, b in pauses] for at in expected]
    gain = [[value if value >= 0.01 else 0.0 for value in row] for row in gain]
    best = np.zeros((ends + 1, len(pauses) + 1))  # best[j][i]: the first j ends matched among the first i pauses
    for j in range(1, ends + 1):
        for i in range(len(pauses) + 1):
            options = [best[j - 1][i]]  # end j with no pause
            if i:
                options.append(best[j][i - 1])  # pause i unused
                if gain[j - 1][i - 1] > 0:
                    options.append(best[j - 1][i - 1] + gain[j - 1][i - 1])
            best[j][i] = max(options)
    matched, j, i = [None] * ends, ends, len(pauses)
    while j > 0:
        if i and best[j][i] == best[j][i - 1]:
            i -= 1
        elif i and gain[j - 1][i - 1] > 0 and np.isclose(best[j][i], best[j - 1][i - 1] + gain[j - 1][i - 1]):
            matched[j - 1] = pauses[i - 1]
            i, j = i - 1, j - 1
        else:
            j -= 1
    bounds, last = [], begin
    for pause, at in zip(matched, expected):
        pause = pause or (max(at, last), max(at, last))
        bounds.append(pause)
        last = pause[1]
    starts = [begin] + [b[1] for b in bounds]
    stops = [b[0] for b in bounds] + [finish]
    return [{"text": s, "timestamp": (round(float(a), 2), round(float(b), 2))} for s, a, b in zip(sentences, starts, stops)]


def read_audio_file(source) -> tuple[np.ndarray, int]:
    """(samples, sampling rate) of the first audio stream of a file's path or bytes, decoded by FFmpeg
    through PyAV: any container and codec FFmpeg reads (WAV, FLAC, MP3, OGG/Opus, M4A/AAC, WMA, and
    the sound of MP4/MKV/WebM video). Samples are float32, `(channels, samples)`, at the file's rate.
    A file that cannot be read raises one line, `PATH: reason`: FileNotFoundError where there is no
    file, ValueError where it holds no audio FFmpeg decodes."""
    try:
        import av
    except ImportError as error:
        raise ImportError("Reading audio files needs PyAV (FFmpeg's decoders): pip install av") from error
    if isinstance(source, bytes):
        name, opened = "audio bytes", io.BytesIO(source)
    else:
        name = opened = os.fspath(source)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"{name}: no such file")
    if (len(source) if isinstance(source, bytes) else os.path.getsize(name)) == 0:
        raise ValueError(f"{name}: empty file (0 bytes)")
    try:
        with av.open(opened, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValueError(f"{name}: no audio stream (a {container.format.name} file)")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # planar float32, the stream's own layout and rate
            frames = [f for frame in container.decode(stream) for f in to_float.resample(frame)]
            frames += to_float.resample(None)  # what the resampler still holds
    except av.FFmpegError as error:  # FFmpeg's own reason, e.g. "Invalid data found when processing input"
        raise ValueError(f"{name}: not audio FFmpeg can decode ({error.strerror})") from error
    if sum(frame.samples for frame in frames) == 0:
        raise ValueError(f"{name}: the audio stream holds no samples")
    # the decoded rate, not the container's: HE-AAC, for one, decodes at twice the rate its header gives
    return np.concatenate([frame.to_ndarray() for frame in frames], axis=1), frames[0].sample_rate


def load_audio(source) -> np.ndarray:
    """An audio or video file's path or bytes as 16 kHz float32 mono samples, the rate the graft hears."""
    samples, sampling_rate = read_audio_file(source)
    return resample_to_16k(to_float_mono(samples, 0), sampling_rate)


# Speech is found by Silero VAD where `silero-vad` is installed (its model ships inside the wheel; faster-whisper
# and WhisperX segment with it): the energy rule above takes steady noise and music for speech. The energy
# rule stays as the fallback, and its frame energy still places cuts inside long speech.
SPEECH_DETECTORS = ("auto", "silero", "energy")


def resolve_speech_detector(name: str = "auto") -> str:
    """The speech detector that runs for `name`: "silero" or "energy" ("auto": Silero VAD where installed)."""
    if name not in SPEECH_DETECTORS:
        raise ValueError(f'speech_detector must be "auto", "silero" or "energy", got {name!r}')
    if name == "energy":
        return "energy"
    if importlib.util.find_spec("silero_vad") is None:
        if name == "silero":
            raise ImportError('speech_detector="silero" needs Silero VAD: pip install silero-vad')
        return "energy"
    return "silero"


@functools.lru_cache(maxsize=1)
def _silero_model():
    return _silero_vad().load_silero_vad()


def _silero_vad():
    # imported in a try block: transformers' remote-code loader then does not require it of every user
    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as error:
        raise ImportError('speech_detector="silero" needs Silero VAD: pip install silero-vad') from error
    finally:
        # Importing silero_vad calls torch.set_num_threads(1) for the whole process: the encoder and the LLM
        # would then run on one core of the CPU, whatever it has.
        torch.set_num_threads(threads)
    return silero_vad


def silero_speech_frames(samples: np.ndarray) -> np.ndarray:
    """Which 10 ms frames of 16 kHz `samples` hold speech by Silero VAD (its default settings): `(frames,)` booleans."""
    speech = np.zeros(len(samples) // FRAME_SAMPLES, dtype=bool)
    spans = _silero_vad().get_speech_timestamps(torch.from_numpy(samples), _silero_model(), sampling_rate=SAMPLING_RATE)
    for span in spans:
        speech[span["start"] // FRAME_SAMPLES : -(-span["end"] // FRAME_SAMPLES)] = True
    return speech


def find_speech(samples: np.ndarray, energy: np.ndarray, speech_detector: str = "auto") -> np.ndarray:
    """`speech_frames` of 16 kHz `samples` (whose `frame_energy` is `energy`) by the detector
    `resolve_speech_detector(speech_detector)` names."""
    if resolve_speech_detector(speech_detector) == "silero":
        return silero_speech_frames(samples)
    return _speech_in(energy)


class Qwen2AudioGraftASRPipeline(AutomaticSpeechRecognitionPipeline):
    """ASR pipeline for the graft: prompt + audio in, generated text out.

    Decoding is deterministic: beam search of the width the model's `generation_config.num_beams`
    sets (1, greedy, where it sets none), no sampling. Call arguments:

    - `prompt`: an instruction replacing "Transcribe this audio.", e.g. a request to translate;
    - `max_new_tokens`, and `generate_kwargs` (a dict for `model.generate`, over those defaults);
    - `return_timestamps=True`: also return `chunks`, `[{"text", "timestamp": (start, end)}]` in
      seconds, as transformers' Whisper pipeline does;
    - `segment_audio`: `"auto"` (default) transcribes a recording longer than `max_segment_seconds`
      in segments cut at pauses (`split_at_pauses`), batched under `batch_size` with the segments of
      the other recordings, so any length runs in bounded memory; `True` segments every recording,
      `False` puts the whole recording in one prompt (up to the model's `max_audio_seconds`), for
      instructions about the whole of it ("Summarise this."). With another `prompt`, `"auto"`
      keeps the whole recording; `segment_audio=True` applies the prompt to each segment.
    - `max_segment_seconds` (default 10, chosen on validation; at most 30);
    - `speech_detector`: `"auto"` (default: Silero VAD where `silero-vad` is installed, else the
      frame-energy rule), `"silero"` or `"energy"`; also a `pipeline(...)` argument, for every call.

    A recording without speech (silence, noise, music, or less than 0.2 s of speech) gives empty
    text and no chunks when transcribing; the model is not asked to make words of it.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.type = "seq2seq"  # the parent guessed "ctc" for a class it does not know

    def _sanitize_parameters(self, prompt=None, max_new_tokens=None, generate_kwargs=None, return_timestamps=None,
                             segment_audio=None, max_segment_seconds=None, speech_detector=None, **unexpected):  # fmt: skip
        if unexpected:
            raise TypeError(f"Unexpected arguments for the audio graft pipeline: {sorted(unexpected)}")
        if return_timestamps not in (None, True, False):
            raise ValueError(f"return_timestamps must be True or False (sentence timestamps; word timestamps are "
                             f"not supported), got {return_timestamps!r}")  # fmt: skip
        if segment_audio not in (None, "auto", True, False):
            raise ValueError(f'segment_audio must be "auto", True or False, got {segment_audio!r}')
        if return_timestamps and segment_audio is False:
            raise ValueError("return_timestamps=True needs segments: segment_audio=False puts the whole recording in "
                             "one prompt, which has no timestamps")  # fmt: skip
        if speech_detector is not None:
            resolve_speech_detector(speech_detector)  # an unknown name, or Silero asked for and missing, fails here
        forward_params = {"generate_kwargs": dict(generate_kwargs or {})}
        if max_new_tokens is not None:
            forward_params["generate_kwargs"]["max_new_tokens"] = max_new_tokens
        preprocess_params = {"prompt": prompt, "segment_audio": segment_audio, "return_timestamps": return_timestamps,
                             "max_segment_seconds": max_segment_seconds, "speech_detector": speech_detector}  # fmt: skip
        preprocess_params = {k: v for k, v in preprocess_params.items() if v is not None}
        postprocess_params = {"return_timestamps": bool(return_timestamps)}
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs, prompt=DEFAULT_INSTRUCTION, segment_audio="auto", return_timestamps=False,
                   max_segment_seconds=DEFAULT_SEGMENT_SECONDS, speech_detector="auto"):  # fmt: skip
        samples, sampling_rate = self._load(inputs)
        # Resampled here so that a batch of clips from different sources shares one rate.
        samples = resample_to_16k(to_float_mono(samples, 0), sampling_rate)
        transcribing = prompt == DEFAULT_INSTRUCTION
        segmented = segment_audio is True or return_timestamps or (
            segment_audio == "auto" and transcribing and len(samples) > max_segment_seconds * SAMPLING_RATE)
        text_prompt = build_prompt(self.processor, prompt)
        if not segmented and not transcribing:  # another instruction: the whole recording, speech or not
            yield {"is_last": True, "audio": samples, "prompt": text_prompt,
                   "timestamp": (0.0, round(len(samples) / SAMPLING_RATE, 2)), "pauses": []}
            return
        energy = frame_energy(samples)
        speech = find_speech(samples, energy, speech_detector)
        segments = split_at_pauses(samples, max_segment_seconds, energy=energy, speech=speech)
        if not segmented:
            silent = not segments
            # a recording without speech runs no prompt: the model is not asked to make words of silence
            yield {"is_last": True, "audio": None if silent else samples, "prompt": text_prompt,
                   "timestamp": None if silent else (0.0, round(len(samples) / SAMPLING_RATE, 2)), "pauses": []}
            return
        if not segments:
            yield {"is_last": True, "audio": None, "prompt": text_prompt, "timestamp": None, "pauses": []}
        for index, (start, end) in enumerate(segments):
            pauses = pauses_within(speech, start // FRAME_SAMPLES, end // FRAME_SAMPLES) if return_timestamps else []
            yield {"is_last": index == len(segments) - 1, "audio": samples[start:end], "prompt": text_prompt,
                   "timestamp": (round(start / SAMPLING_RATE, 2), round(end / SAMPLING_RATE, 2)), "pauses": pauses}

    @staticmethod
    def resolve_speech_detector(name: str = "auto") -> str:
        """The speech detector that runs for `speech_detector=name`: "silero" or "energy"."""
        return resolve_speech_detector(name)

    def _load(self, inputs) -> tuple:
        if isinstance(inputs, (str, os.PathLike, bytes)):
            return read_audio_file(inputs)
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
        clips, prompts, is_last = model_inputs["audio"], model_inputs["prompt"], model_inputs["is_last"]
        batched = not isinstance(prompts, str)  # batch_size=1 gives one item, larger batches give lists
        if not batched:
            clips, prompts = [clips], [prompts]
        texts = [""] * len(prompts)
        rows = [i for i, clip in enumerate(clips) if clip is not None]
        if rows:
            inputs = self.processor(text=[prompts[i] for i in rows], audio=[clips[i] for i in rows],
                                    sampling_rate=SAMPLING_RATE, return_tensors="pt").to(self.model.device)  # fmt: skip
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
            kwargs = {"do_sample": False, "num_beams": decoding_beams(self.model.generation_config), "max_new_tokens": 256}
            kwargs.update(getattr(self, "_generate_kwargs", None) or {})
            kwargs.update(generate_kwargs or {})
            sequences = self.model.generate(**inputs, **kwargs)
            decoded = self.processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for row, text in zip(rows, decoded):
                texts[row] = text.strip()
        out = {"text": texts, "timestamp": model_inputs["timestamp"], "pauses": model_inputs["pauses"], "is_last": is_last}
        return out if batched else {**out, "text": texts[0]}

    def postprocess(self, model_outputs, return_timestamps=False):
        # One output per segment (a short recording is one), in order; a recording without speech gives one
        # output of empty text and no timestamp.
        spoken = [out for out in model_outputs if out["timestamp"] is not None and out["text"]]
        result = {"text": " ".join(out["text"] for out in spoken)}
        if return_timestamps:  # a chunk a sentence, timed by the segment's pauses
            result["chunks"] = [chunk for out in spoken
                                for chunk in sentence_chunks(out["text"], tuple(out["timestamp"]), out["pauses"])]  # fmt: skip
        return result

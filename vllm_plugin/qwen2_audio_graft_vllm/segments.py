"""Long transcription requests cut at pauses, as the transformers pipeline cuts them.

vLLM's transcription endpoint splits audio longer than the model's `max_audio_clip_s` with its own
`split_audio` (the quietest window near each 30 s mark, overlapping chunks). For this model the
endpoint uses the pipeline's `split_at_pauses` instead, so that both paths give the same segments:
the model's speech-to-text config asks for it by a split window of `FRAME_SAMPLES` (10 ms, the
segmenter's frame), and other models keep vLLM's own splitting.
"""

from qwen2_audio_graft.pipeline_qwen2_audio_graft import FRAME_SAMPLES, split_at_pauses


def pause_segments(audio_data, sample_rate, max_clip_duration_s, overlap_duration_s, min_energy_window_size):
    """`split_audio`'s signature: the segments of `audio_data` cut at pauses (the whole clip when none holds speech)."""
    segments = split_at_pauses(audio_data, max_segment_seconds=float(max_clip_duration_s))
    return [audio_data[start:end] for start, end in segments] or [audio_data]


def use_pause_segmenter() -> None:
    """Route vLLM's transcription splitting to `pause_segments` for models that ask for it."""
    from vllm.entrypoints.speech_to_text.base import serving

    original = getattr(serving.split_audio, "__wrapped__", serving.split_audio)

    def split_audio(audio_data, sample_rate, max_clip_duration_s, overlap_duration_s, min_energy_window_size):
        split = pause_segments if min_energy_window_size == FRAME_SAMPLES else original
        return split(audio_data, sample_rate, max_clip_duration_s, overlap_duration_s, min_energy_window_size)

    split_audio.__wrapped__ = original
    serving.split_audio = split_audio

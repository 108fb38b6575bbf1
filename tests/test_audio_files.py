"""Audio and video files, decoded by FFmpeg through PyAV: every container the tests make here, and the one-line
errors of the files that hold no audio, the same through the pipeline as from the reader."""

import av
import numpy as np
import pytest
from transformers import pipeline

from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio, read_audio_file

RATE = 16000


def encode(path, samples: np.ndarray, rate: int, codec: str, container_format: str, video: bool = False):
    """Write mono float `samples` at `rate` with PyAV's encoder `codec` into a `container_format` file; with
    `video`, beside 10 frames a second of a black 32x32 picture (as a phone's MP4 has); `codec=None`: video only."""
    with av.open(str(path), "w", format=container_format) as container:
        picture = container.add_stream("libvpx" if container_format == "webm" else "mpeg4", rate=10) if video else None
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 32, 32, "yuv420p"
        if codec is not None:
            sound = container.add_stream(codec, rate=rate, layout="mono")
            sound.bit_rate = 64000
            frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = rate
            for piece in av.AudioResampler(format=sound.format.name, layout="mono", rate=rate).resample(frame):
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
        if picture is not None:
            black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for _ in range(int(len(samples) / rate * 10)):
                container.mux(picture.encode(black))
            container.mux(picture.encode(None))
    return path


# name, PyAV encoder, container, rate, with a video stream
CONTAINERS = [("clip.wav", "pcm_s16le", "wav", 16000, False), ("clip.flac", "flac", "flac", 44100, False),
              ("clip.mp3", "libmp3lame", "mp3", 22050, False), ("clip.ogg", "libopus", "ogg", 48000, False),
              ("clip.m4a", "aac", "ipod", 16000, False), ("clip.wma", "wmav2", "asf", 16000, False),
              ("clip.mp4", "aac", "mp4", 44100, True), ("clip.mkv", "libopus", "matroska", 48000, True),
              ("clip.webm", "libopus", "webm", 48000, True)]  # fmt: skip


def tone(seconds: float, rate: int, hertz: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hertz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("name,codec,container_format,rate,video", CONTAINERS)
def test_every_container_decodes_to_the_sound_written(tmp_path, name, codec, container_format, rate, video):
    path = encode(tmp_path / name, tone(1.0, rate), rate, codec, container_format, video)
    samples, read_rate = read_audio_file(path)
    assert read_rate == rate and samples.dtype == np.float32 and samples.shape[0] == 1
    assert 0.99 <= samples.shape[1] / rate <= 1.1  # lossy codecs pad their last frame (WMA drops part of it)
    assert np.array_equal(read_audio_file(path.read_bytes())[0], samples)  # bytes read as the path is
    heard = load_audio(path)  # 16 kHz mono, what the graft hears
    assert 0.99 <= len(heard) / RATE <= 1.1
    assert np.argmax(np.abs(np.fft.rfft(heard))) * RATE / len(heard) == pytest.approx(440, abs=1)  # the tone's pitch
    assert np.sqrt(np.mean(np.square(heard[1000:15000]))) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)  # lossy codecs


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(1.0, 44100, 440.0), tone(1.0, 44100, 660.0)
    with av.open(str(tmp_path / "stereo.m4a"), "w", format="ipod") as container:
        sound = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([left, right]), format="fltp", layout="stereo")
        frame.sample_rate = 44100
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    samples, rate = read_audio_file(tmp_path / "stereo.m4a")
    assert rate == 44100 and samples.shape[0] == 2
    spectrum = np.abs(np.fft.rfft(load_audio(tmp_path / "stereo.m4a")[:RATE]))
    assert sorted(np.argsort(spectrum)[-2:]) == [440, 660]  # both channels heard
    assert spectrum[440] == pytest.approx(spectrum[660], rel=0.1)


def bad_files(folder):
    """(path, the one-line error) of files that hold no audio, made in `folder`."""
    folder.mkdir(exist_ok=True)
    (folder / "notes.wav").write_text("Meeting notes: nothing to hear here.\n" * 20)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "random.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    encode(folder / "silent-film.mp4", tone(1.0, RATE), RATE, None, "mp4", video=True)
    return [(folder / "notes.wav", "not audio FFmpeg can decode (Invalid data found when processing input)"),
            (folder / "empty.wav", "empty file (0 bytes)"),
            (folder / "random.mp3", "not audio FFmpeg can decode (Invalid data found when processing input)"),
            (folder / "silent-film.mp4", "no audio stream (a mov,mp4,m4a,3gp,3g2,mj2 file)")]  # fmt: skip


def test_files_without_audio_raise_one_line_naming_them(tmp_path, tiny_dir):
    asr = pipeline("automatic-speech-recognition", model=str(tiny_dir), trust_remote_code=True)
    for path, reason in bad_files(tmp_path):
        for read in (read_audio_file, load_audio, lambda p: asr(str(p))):  # the pipeline raises the same
            with pytest.raises(ValueError) as info:
                read(path)
            assert str(info.value) == f"{path}: {reason}"
    with pytest.raises(ValueError) as info:
        asr(b"")
    assert str(info.value) == "audio bytes: empty file (0 bytes)"
    for read in (read_audio_file, lambda p: asr(str(p))):
        with pytest.raises(FileNotFoundError) as info:
            read(tmp_path / "missing.wav")
        assert str(info.value) == f"{tmp_path / 'missing.wav'}: no such file"

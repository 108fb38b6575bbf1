"""`vllm serve` with the mini graft answers /v1/audio/transcriptions (after `make demo`; `make vllm-test` runs it).

The server starts on a free localhost port, is given 10 minutes to come up, answers one WAV file and
is stopped, whatever happens.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFT, DEVTEST = ROOT / "build" / "mini-graft", ROOT / "build" / "demo-corpus" / "devtest.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(path: Path, fields: dict) -> tuple[bytes, str]:
    boundary = "graft-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 "Content-Type: audio/wav\r\n\r\n".encode() + path.read_bytes() + b"\r\n")  # fmt: skip
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.mini
def test_transcriptions_endpoint_answers_with_the_pipelines_text():
    from transformers import pipeline

    if not (GRAFT / "config.json").exists():
        pytest.fail(f"{GRAFT} missing: make demo assembles the mini graft first")
    row = json.loads(DEVTEST.read_text().splitlines()[0])
    wav = DEVTEST.parent / row["audio"]
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(GRAFT),
                               "--trust-remote-code", "--dtype", "bfloat16", "--max-model-len", "2048", "--port", str(port),
                               "--served-model-name", "mini-graft"], env=env, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                assert server.poll() is None, f"vllm serve exited with {server.returncode}"
                time.sleep(5)
        else:
            pytest.fail("vllm serve did not come up within 10 minutes")
        body, content_type = multipart(wav, {"model": "mini-graft", "temperature": "0", "response_format": "json"})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/transcriptions", data=body,
                                         headers={"Content-Type": content_type})  # fmt: skip
        text = json.loads(urllib.request.urlopen(request, timeout=300).read())["text"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    asr = pipeline("automatic-speech-recognition", model=str(GRAFT), trust_remote_code=True)
    assert text.strip() == asr(str(wav), generate_kwargs={"num_beams": 1})["text"]

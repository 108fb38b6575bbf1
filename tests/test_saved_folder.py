"""The saved folder is a complete Hub repo: a fresh process with the project off sys.path loads it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests.conftest import make_clip
from qwen2_audio_graft.pipeline_qwen2_audio_graft import build_prompt

HERE = Path(__file__).resolve().parent


def compat_pythons():
    """This interpreter, plus those in GRAFT_COMPAT_PYTHONS (e.g. a venv with transformers 5.17)."""
    extra = [p for p in os.environ.get("GRAFT_COMPAT_PYTHONS", "").split(os.pathsep) if p]
    missing = [p for p in extra if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"GRAFT_COMPAT_PYTHONS names interpreters that do not exist: {missing}")
    return [sys.executable, *extra]


def test_folder_holds_code_and_auto_map(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    for code in ("configuration_qwen2_audio_graft.py", "modeling_qwen2_audio_graft.py",
                 "processing_qwen2_audio_graft.py", "pipeline_qwen2_audio_graft.py"):  # fmt: skip
        assert code in names
    config = json.loads((tiny_dir / "config.json").read_text())
    target = "modeling_qwen2_audio_graft.Qwen2AudioGraftForConditionalGeneration"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_qwen2_audio_graft.Qwen2AudioGraftConfig",
        "AutoModel": target,
        "AutoModelForSpeechSeq2Seq": target,
        "AutoModelForCausalLM": target,
        "AutoModelForImageTextToText": target,
    }
    assert config["custom_pipelines"]["automatic-speech-recognition"]["impl"] == (
        "pipeline_qwen2_audio_graft.Qwen2AudioGraftASRPipeline"
    )
    processor_config = json.loads((tiny_dir / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_qwen2_audio_graft.Qwen2AudioGraftProcessor"


@pytest.mark.parametrize("python", compat_pythons())
def test_fresh_process_loads_and_matches(tiny, tiny_dir, tmp_path, python):
    model, processor = tiny
    inputs = processor(text=build_prompt(processor), audio=make_clip(2.0), sampling_rate=16000)
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    np.savez(tmp_path / "inputs.npz", logits=logits, **{k: v.numpy() for k, v in inputs.items()})
    soundfile.write(tmp_path / "clip.wav", make_clip(1.5, sampling_rate=22050), 22050, subtype="PCM_16")
    script = shutil.copy(HERE / "fresh_process_check.py", tmp_path / "check.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    run = subprocess.run(
        [python, "-I", script, str(tiny_dir), str(tmp_path / "inputs.npz"), str(tmp_path / "clip.wav"), str(HERE.parent)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT ", 1)[1])
    assert report["sys_path_has_repo"] is False and report["modules_from_repo"] == []
    target = "Qwen2AudioGraftForConditionalGeneration"
    assert report["classes"] == {
        "config": "Qwen2AudioGraftConfig", "processor": "Qwen2AudioGraftProcessor", "AutoModel": target,
        "AutoModelForSpeechSeq2Seq": target, "AutoModelForCausalLM": target, "AutoModelForImageTextToText": target,
    }  # fmt: skip
    assert all(error < 1e-5 for error in report["max_logit_error"].values()), report["max_logit_error"]
    assert report["pipeline_class"] == "Qwen2AudioGraftASRPipeline"
    assert report["batch_equals_single"] is True
    assert report["single_equals_generate"] is True and report["texts_nonempty"] is True
    assert report["file_equals_resampled_array"] is True  # a 22.05 kHz WAV file, read and resampled
    assert report["dict_44k_equals_resampled_array"] is True
    assert report["long_70s"] == {"equals_generate": True, "audio_tokens": 3500}  # 1500 + 1500 + 500, not cut
    # 3 beams over a 70 s clip (3 windows) and a short one (1): 4 windows read once, 12 when every row is read
    assert report["beams"]["encoder_windows"] == [4, 12] and report["beams"]["same_sequences"] is True
    assert report["beams"]["score_error"] < 1e-5
    # segments at the pauses (0.75 s of silence between sounds of 1.5, 2.5 and 1 s), widened by 50 ms
    assert report["timestamps"] == {"chunks": [[0.7, 2.3], [2.95, 5.55], [6.2, 7.3]], "batch_1_equals_3": True,
                                    "texts": True}

"""A save in a fresh process prints nothing but its progress bar: accelerate imports DeepSpeed on every
`save_pretrained` where it is installed, and train/__init__.py (which mini/ imports) drops its CPU notice."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SAVE = """
import sys
import mini  # noqa: F401
from transformers import Qwen2Config, Qwen2ForCausalLM

config = Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, vocab_size=64)
Qwen2ForCausalLM(config).save_pretrained(sys.argv[1])
print("deepspeed imported:", "deepspeed" in sys.modules)
"""


def _output_of_a_save(folder: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-c", SAVE, str(folder)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("Writing model shards")]


def test_a_save_prints_no_notice(tmp_path):
    assert _output_of_a_save(tmp_path) == ["deepspeed imported: True"]

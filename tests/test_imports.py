"""Every `from <project module> import name` in the repository resolves, including the imports inside
functions that only run in long jobs (`make demo`, the benchmarks), which no other test reaches."""

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("train", "mini", "bench", "qwen2_audio_graft", "configuration_qwen2_audio_graft",
           "modeling_qwen2_audio_graft", "processing_qwen2_audio_graft", "pipeline_qwen2_audio_graft")  # fmt: skip


def project_imports():
    for path in sorted(ROOT.glob("**/*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or parts[0] in ("build", "vllm_plugin"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in PROJECT:
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node.module, [alias.name for alias in node.names]


def resolves(module: str, name: str) -> bool:
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
        return True
    except ImportError:
        return False


def test_every_project_import_resolves():
    found = list(project_imports())
    assert len(found) > 100  # the walk sees the repository
    missing = [f"{where}: {module}.{name}" for where, module, names in found for name in names if not resolves(module, name)]
    assert missing == []

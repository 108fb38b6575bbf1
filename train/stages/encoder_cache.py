"""Encode a training set with the frozen Whisper encoder once and reuse the outputs.

Both stages keep the encoder frozen, so its outputs for a clip never change: computing them at
every step of every epoch (a full 30 s window per clip, however short the clip) is wasted work.
`with_encoder_cache` runs the encoder over the dataset once, stores for each window only the
frames the audio tokens are made of (rounded up to a multiple of 8, so one cache serves every
`audio_downsample`), in sharded safetensors files, and wraps the dataset so each item carries
its stored states. The collator then sends `audio_encoder_states` instead of `input_features`;
the model skips the encoder and the loss is the same as without the cache (tests).

The cache file names hold a fingerprint of the encoder's weights and dtype and of the rows'
audio references, so a changed encoder or manifest gets a fresh cache. Each stored clip also
records a checksum of its decoded samples, and reading a clip whose audio has since changed
raises an error instead of training on stale states.
"""

import argparse
import hashlib
import json
import os
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from qwen2_audio_graft.configuration_qwen2_audio_graft import WINDOW_SAMPLES, encoder_frames

from .data import SpeechDataset, load_rows
from ..weights.loading import load_graft

FRAME_MULTIPLE = 8  # the largest audio_downsample: stored frames cover every downsample's last token
SHARD_BYTES = 1 << 30
INDEX_FILE = "index.json"


def samples_checksum(samples: np.ndarray) -> str:
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    return f"{samples.size}:{zlib.crc32(samples.tobytes()):08x}"


def fingerprint(graft, rows, dataset) -> str:
    """Hash of the encoder's weights, dtype and way of encoding (`encode_padding`), and of the
    audio references of the dataset's rows."""
    digest = hashlib.sha256()
    digest.update(f"encode_padding={graft.config.encode_padding}".encode())
    for name, tensor in sorted(graft.audio_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for index in dataset.valid:
        digest.update(repr(rows[index].get("audio")).encode())
    return digest.hexdigest()[:16]


def stored_frames(model, input_features_mask: torch.Tensor) -> list[int]:
    """Frames kept per window: those of its real audio, rounded up to FRAME_MULTIPLE, at most 1500."""
    graft = _graft_model(model)
    limit = graft.config.audio_config.max_source_positions
    mel = input_features_mask.sum(-1).tolist()
    return [min(-(-encoder_frames(int(n)) // FRAME_MULTIPLE) * FRAME_MULTIPLE, limit) for n in mel]


def _graft_model(model):
    """The `Qwen2AudioGraftModel` inside a graft, a PEFT wrapper or a DDP wrapper."""
    while not hasattr(model, "audio_tower"):
        model = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "model")
    return model


@torch.no_grad()
def build_cache(model, processor, dataset, folder: Path, batch_size: int = 8) -> None:
    """Run the encoder over every item of `dataset`; write shards and an index into `folder`."""
    graft = _graft_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    index, shard, shard_bytes, shard_number = {}, {}, 0, 0

    def flush():
        nonlocal shard, shard_bytes, shard_number
        if shard:
            name = f"shard-{shard_number:05d}.safetensors"
            save_file(shard, str(folder / name))
            for key in shard:
                index.setdefault(key.split(".")[0], {"shard": name})
            shard, shard_bytes, shard_number = {}, 0, shard_number + 1

    checksums = {}
    for start in tqdm(range(0, len(dataset), batch_size), desc="encoding the training set once", unit="batch"):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        clips = [item["audio"] for item in items]
        features = processor.audio_windows(clips)  # the processor's own windowing and log-mel
        states = graft.encode_audio(features["input_features"], features["input_features_mask"])
        keep = stored_frames(model, features["input_features_mask"])
        window = 0
        for offset, item in enumerate(items):
            key = str(start + offset)
            count = -(-len(item["audio"]) // WINDOW_SAMPLES)
            for w in range(count):
                shard[f"{key}.{w}"] = states[window, : keep[window]].contiguous().cpu()
                shard_bytes += shard[f"{key}.{w}"].numel() * shard[f"{key}.{w}"].element_size()
                window += 1
            checksums[key] = (samples_checksum(item["audio"]), count)
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    for key, (checksum, count) in checksums.items():
        index[key].update(checksum=checksum, windows=count)
    (folder / INDEX_FILE).write_text(json.dumps(index))


class CachedEncoderDataset(torch.utils.data.Dataset):
    """A `SpeechDataset` whose items also carry `encoder_states`: the stored windows of the clip."""

    def __init__(self, dataset, folder: Path):
        self.dataset, self.folder = dataset, Path(folder)
        self.index = json.loads((self.folder / INDEX_FILE).read_text())
        if len(self.index) != len(dataset):
            raise ValueError(f"The encoder cache in {folder} holds {len(self.index)} clips, the dataset {len(dataset)}")
        self.skips, self.lengths, self._handles = dataset.skips, dataset.lengths, {}

    def __len__(self):
        return len(self.dataset)

    def _shard(self, name):
        if name not in self._handles:  # opened lazily: each DataLoader worker gets its own handles
            self._handles[name] = safe_open(str(self.folder / name), framework="pt")
        return self._handles[name]

    def __getitem__(self, index):
        item = dict(self.dataset[index])
        entry = self.index[str(index)]
        if samples_checksum(item["audio"]) != entry["checksum"]:
            raise ValueError(
                f"The audio of row {item['id']} changed since the encoder cache in {self.folder} was written: "
                "delete that folder to rebuild it"
            )
        shard = self._shard(entry["shard"])
        item["encoder_states"] = [shard.get_tensor(f"{index}.{w}") for w in range(entry["windows"])]
        return item

    def __getstate__(self):  # safetensors handles do not pickle (DataLoader workers)
        return {**self.__dict__, "_handles": {}}


def with_encoder_cache(model, processor, dataset, cache_dir, training_args=None):
    """`dataset` wrapped with stored encoder outputs, building the cache first if it is missing.

    Under DDP the main process builds it while the others wait, then all read the same files."""
    if not hasattr(dataset, "valid"):
        raise ValueError("encoder_cache_dir needs a map-style dataset: it cannot cache a streamed one")
    folder = Path(cache_dir) / f"encoder-states-{fingerprint(_graft_model(model), dataset.rows, dataset)}"
    first = training_args.main_process_first(local=True) if training_args is not None else nullcontext()
    with first:
        if not (folder / INDEX_FILE).exists():
            partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
            build_cache(model, processor, dataset, partial)
            os.replace(partial, folder)
    print(f"encoder outputs for {len(dataset)} clips from {folder}")
    return CachedEncoderDataset(dataset, folder)


def main(argv=None):
    """Build the cache ahead of training (the stages build it themselves when it is missing)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", required=True, help="graft folder (its encoder is the one cached)")
    parser.add_argument("--train_data", required=True)
    parser.add_argument("--encoder_cache_dir", required=True)
    parser.add_argument("--dtype", default="bfloat16", help="the dtype the stage loads the graft in")
    args = parser.parse_args(argv)
    model, processor = load_graft(args.model, dtype=getattr(torch, args.dtype))
    dataset = SpeechDataset(load_rows(args.train_data), processor.max_audio_seconds)
    with_encoder_cache(model, processor, dataset, args.encoder_cache_dir)


if __name__ == "__main__":
    main()

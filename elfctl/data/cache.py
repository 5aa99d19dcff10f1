"""The latent cache written by ``elfctl encode``: safetensors shards plus a manifest.

``<dir>/manifest.json`` names what produced the latents (tokenizer, encoder, normalisation, max_length, dtype,
dataset) and lists the finished shards; ``<dir>/shard_00000.safetensors`` holds ``input_ids``,
``attention_mask``, ``cond_mask`` and ``latents`` of up to ``data.shard_size`` examples. A shard is written
under a temporary name and renamed when complete, and the manifest is rewritten (atomically) after each one,
so an interrupted encode resumes from its finished shards and a partial shard never counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch.utils.data import Dataset

from elfctl.atomic import atomic_write_bytes, atomic_write_json
from elfctl.errors import ConfigError

MANIFEST = "manifest.json"
VERSION = 1
LEGACY = {"cond_layout": "eos"}  # what a cache written before a key existed holds


def expected_manifest(cfg, split: str, dtype: str) -> dict:
    """The fields a cache must match to serve this recipe."""
    e, d = cfg.encoder, cfg.data
    return {"format": VERSION, "encoder_source": e.source, "encoder_mode": e.mode,
            "encoder_architecture": e.architecture, "tokenizer": e.tokenizer or e.source,
            "latent_mean": e.latent_mean, "latent_std": e.latent_std, "dataset": d.dataset, "task": d.task,
            "hub_config": d.hub_config, "split": split, "max_length": d.max_length,
            "max_input_length": d.max_input_length, "pad_token": d.pad_token, "packing": d.packing,
            "split_seed": d.split_seed, "val_fraction": d.val_fraction, "max_examples": d.max_examples, "dtype": dtype,
            # eos-padded caches written before the padding stopped being encoder keys hold other latents
            **({"padding_keys": "masked"} if d.pad_token == "eos" else {}),
            # a conditional cache holds the latents of one layout (caches from before the key: elfctl's eos)
            **({"cond_layout": d.cond_layout} if d.task == "conditional" else {})}


def check_manifest(manifest: dict, cfg, split: Optional[str] = None) -> None:
    """Raise one ConfigError naming the first field where the cache and the recipe disagree."""
    want = expected_manifest(cfg, split or manifest.get("split", cfg.data.train_split), manifest.get("dtype"))
    for key, value in want.items():
        have = manifest.get(key, LEGACY.get(key))
        if have != value:
            raise ConfigError(f"latent cache does not match the recipe: {key} is {have!r} in the cache "
                              f"but {value!r} in the recipe; rebuild it with `elfctl encode` or point "
                              f"data.latent_cache elsewhere")


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a latent cache ({e})") from None


def write_manifest(path: Path, manifest: dict) -> None:
    atomic_write_json(Path(path) / MANIFEST, manifest)


def write_shard(path: Path, index: int, tensors: dict[str, torch.Tensor]) -> str:
    name = f"shard_{index:05d}.safetensors"
    atomic_write_bytes(Path(path) / name, save_safetensors({k: v.contiguous() for k, v in tensors.items()}))
    return name


def prepare_resume(path: Path, manifest: dict) -> dict:
    """Before resuming an interrupted encode: delete torn temporary shards, keep only listed shards that exist.

    A shard counts only once it is renamed into place *and* listed in the manifest; anything else is redone.
    """
    path = Path(path)
    for tmp in path.glob(".shard_*.tmp*"):
        tmp.unlink(missing_ok=True)
    kept = []
    for s in manifest.get("shards", []):
        if not (path / s["file"]).is_file():
            break  # shards are written in order: everything from a missing one on is redone
        kept.append(s)
    listed = {s["file"] for s in kept}
    for f in path.glob("shard_*.safetensors"):
        if f.name not in listed:
            f.unlink(missing_ok=True)  # renamed but never recorded: the manifest write was interrupted
    return {**manifest, "shards": kept, "complete": False}


class LatentCacheDataset(Dataset):
    """Map-style view of a latent cache; shards are memory-mapped, and an item reads only its own rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest.get("complete"):
            raise ConfigError(f"{self.path}: the latent cache is incomplete (an encode was interrupted); "
                              f"run `elfctl encode` again to finish it")
        self.shards = self.manifest["shards"]
        missing = [s["file"] for s in self.shards if not (self.path / s["file"]).is_file()]
        if missing:
            raise ConfigError(f"{self.path}: latent cache shard {missing[0]} is missing; rebuild it with `elfctl encode`")
        self.offsets = [0]
        for s in self.shards:
            self.offsets.append(self.offsets[-1] + s["count"])
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import bisect

        if not 0 <= i < len(self):
            raise IndexError(i)
        s = bisect.bisect_right(self.offsets, i) - 1
        if s not in self._handles:
            self._handles[s] = safe_open(str(self.path / self.shards[s]["file"]), framework="pt")
        f = self._handles[s]
        j = i - self.offsets[s]
        return {k: f.get_slice(k)[j:j + 1][0] for k in f.keys()}

    def __getstate__(self):  # DataLoader workers reopen shards themselves
        return {**self.__dict__, "_handles": {}}

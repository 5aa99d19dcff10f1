"""Encode a recipe's dataset once into a latent cache (``elfctl encode``, and ``train`` with
``data.precompute_latents``).

The encoder is frozen, so its latents of an example never change: encoding the set once and reading the
cache for every epoch gives the same training signal as encoding each batch on the fly, at a fraction of the
cost (on the quickstart recipe the encoder forward is a fifth of a training step, and training runs ~2.7
epochs). See :mod:`elfctl.data.cache` for the on-disk format and how an interrupted encode resumes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from elfctl.errors import ConfigError

KEYS = ("input_ids", "attention_mask", "cond_mask")


@dataclass
class EncodeReport:
    path: Path
    examples: int
    encoded_now: int
    tokens: int
    seconds: float
    truncated: int
    skipped: int
    already_complete: bool = False


def check_encodable(cfg, dtype: str) -> None:
    """One-line ConfigErrors for a cache that cannot be built: a bad storage dtype, or a learned encoder."""
    if dtype not in ("float16", "bfloat16", "float32"):
        raise ConfigError(f"--dtype: {dtype!r} is not valid; choose float16, bfloat16 or float32")
    if cfg.encoder.mode == "learned":
        raise ConfigError("encoder.mode: a learned encoder has no fixed latents to cache (training encodes on the fly)")


def encode_to_cache(cfg, path: Path, *, split: str, dtype: str = "float16", batch_size: int = 64,
                    device: Optional[torch.device] = None, encoder=None, tokenizer=None,
                    echo: Callable[[str], None] = print, progress: Optional[bool] = None) -> EncodeReport:
    """Write (or finish) the latent cache of ``cfg``'s dataset split at ``path``.

    A complete cache that matches the recipe is left as it is; one that does not match raises a ConfigError
    naming the field. ``encoder``/``tokenizer`` may be passed when the caller already built them.
    """
    from elfctl.data.cache import (LatentCacheDataset, check_manifest, expected_manifest, prepare_resume,
                                   read_manifest, write_manifest, write_shard)
    from elfctl.data.dataset import build_dataset
    from elfctl.data.encoders import build_encoder, encode_precision
    from elfctl.data.tokenize import encoder_attention_mask, load_tokenizer

    check_encodable(cfg, dtype)
    dev = device or torch.device("cpu")
    tok = tokenizer or load_tokenizer(cfg.encoder, cfg.data.data_dir)
    enc = encoder or build_encoder(cfg.encoder, tok, cfg.data.data_dir).to(dev)
    was_training = enc.training
    enc.eval()
    # the run's one encoding precision (as training encodes on the fly), recorded in the manifest
    precision = encode_precision(not getattr(enc, "trainable", False), dev, cfg.train.bf16)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    old = read_manifest(path) if (path / "manifest.json").is_file() else None
    if old is not None:
        check_manifest(old, cfg, split)
        if old.get("dtype") != dtype:
            raise ConfigError(f"--dtype: the cache at {path} is {old.get('dtype')}; pass --dtype {old.get('dtype')} "
                              f"or choose another --out")
        if old.get("complete"):
            n = len(LatentCacheDataset(path))
            echo(f"latent cache {path} is complete ({n} examples); nothing to do")
            return EncodeReport(path, n, 0, 0, 0.0, old.get("truncated", 0), old.get("skipped", 0),
                                already_complete=True)

    t0 = time.perf_counter()
    ds = build_dataset(cfg, split, tok)
    st = ds.stats
    echo(f"tokenized {len(ds)} examples of {cfg.data.dataset} [{split}] in {time.perf_counter() - t0:.1f}s "
         f"({st.summary(cfg.data)})")
    if len(ds) == 0:
        raise ConfigError(f"data.dataset: '{cfg.data.dataset}' [{split}] has no examples to encode")
    if old is not None:
        if old.get("encode_precision", "fp32") != precision:
            raise ConfigError(f"latent cache {path} was begun in {old.get('encode_precision', 'fp32')} and this run "
                              f"encodes in {precision} (device {dev}, train.bf16 {cfg.train.bf16}); finish it "
                              f"where it was begun or choose another --out, so one cache holds one precision")
        manifest = prepare_resume(path, old)
    else:
        manifest = {**expected_manifest(cfg, split, dtype), "latent_dim": enc.latent_dim,
                    "vocab_size": enc.vocab_size, "encode_precision": precision, "shards": [], "complete": False}
        manifest = prepare_resume(path, manifest)  # clears torn files left by a run that never wrote a manifest
    write_manifest(path, manifest)
    done = sum(s["count"] for s in manifest["shards"])
    if done:
        echo(f"resuming: {len(manifest['shards'])} finished shards ({done} examples) kept")

    def rows(a: int, b: int) -> dict:
        return {k: torch.stack([ds[i][k] for i in range(a, b)]) for k in KEYS}

    store = getattr(torch, dtype)
    shard = cfg.data.shard_size
    tokens, t0, rate = 0, time.perf_counter(), ""
    previous_precision = enc.precision
    enc.set_precision(precision)
    bar = None
    if sys.stdout.isatty() if progress is None else progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("encode"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                       TimeRemainingColumn())
        task = bar.add_task("encode", total=len(ds), completed=done, rate="")
        bar.start()
    try:
        for start in range(done, len(ds), shard):
            stop = min(start + shard, len(ds))
            parts: dict[str, list] = {k: [] for k in (*KEYS, "latents")}
            for b0 in range(start, stop, batch_size):
                b = rows(b0, min(b0 + batch_size, stop))
                with torch.no_grad():
                    x = enc(b["input_ids"].to(dev), encoder_attention_mask(b["attention_mask"], b["cond_mask"]).to(dev))
                for k in KEYS:
                    parts[k].append(b[k])
                parts["latents"].append(x.to("cpu", store))
                tokens += int(b["attention_mask"].sum())
                rate = f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f} tok/s"
                if bar:
                    bar.update(task, completed=min(b0 + batch_size, stop), rate=rate)
            name = write_shard(path, len(manifest["shards"]), {k: torch.cat(v) for k, v in parts.items()})
            manifest["shards"].append({"file": name, "count": stop - start})
            write_manifest(path, manifest)
            if not bar:
                echo(f"shard {name}: {stop}/{len(ds)} examples, {rate}")
    finally:
        if bar:
            bar.stop()
        enc.train(was_training)
        enc.set_precision(previous_precision)
    manifest.update(complete=True, count=len(ds), truncated=st.truncated, skipped=st.skipped)
    write_manifest(path, manifest)
    return EncodeReport(path, len(ds), len(ds) - done, tokens, time.perf_counter() - t0, st.truncated, st.skipped)


def latent_cache_gb(examples: int, max_length: int, latent_dim: int, bytes_per_value: int = 2) -> float:
    """Size of a float16 latent cache of ``examples`` sequences (the latents; ids and masks add ~1%)."""
    return examples * max_length * latent_dim * bytes_per_value / 1e9

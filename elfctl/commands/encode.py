"""`elfctl encode RECIPE`: tokenize and encode a dataset once into a latent cache (or measure latent stats)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def encode(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides."),
    out: Optional[Path] = typer.Option(None, "--out", help="Cache directory (default: data.latent_cache or "
                                                             "<run_dir>/latents, where training looks)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to encode (default: data.train_split)."),
    stats: bool = typer.Option(False, "--stats", help="Measure latent mean/std on a sample and print the recipe "
                                                      "lines to set; writes no cache."),
    stats_examples: int = typer.Option(512, "--stats-examples", help="Examples measured by --stats."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples per encoder forward."),
    dtype: str = typer.Option("float16", "--dtype", help="Storage dtype of the latents: float16, bfloat16, float32."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Encode a recipe's dataset into a sharded latent cache that `elfctl train` reads instead of encoding.

    Shards are written one at a time (bounded memory); an interrupted run resumes from its finished shards.
    """
    import resource
    import sys
    import time

    import torch

    from elfctl.config import load_config
    from elfctl.data.cache import (LatentCacheDataset, check_manifest, expected_manifest, prepare_resume,
                                   read_manifest, write_manifest, write_shard)
    from elfctl.data.dataset import build_dataset
    from elfctl.data.encoders import build_encoder, measure_latent_stats
    from elfctl.data.tokenize import encoder_attention_mask, load_tokenizer
    from elfctl.errors import ConfigError
    from elfctl.train.distributed import pick_device

    if dtype not in ("float16", "bfloat16", "float32"):
        raise ConfigError(f"--dtype: {dtype!r} is not valid; choose float16, bfloat16 or float32")
    if batch_size < 1 or stats_examples < 1:
        raise ConfigError("--batch-size and --stats-examples must be at least 1")
    cfg = load_config(recipe, overrides or [])
    split = split or cfg.data.train_split
    if cfg.encoder.mode == "learned" and not stats:
        raise ConfigError("encoder.mode: a learned encoder has no fixed latents to cache (training encodes on the fly)")
    dev = pick_device(device)
    t_start = time.perf_counter()
    tok = load_tokenizer(cfg.encoder, cfg.data.data_dir)
    enc = build_encoder(cfg.encoder, tok, cfg.data.data_dir).to(dev).eval()
    t0 = time.perf_counter()
    ds = build_dataset(cfg, split, tok)
    st = ds.stats
    typer.echo(f"tokenized {len(ds)} examples of {cfg.data.dataset} [{split}] in {time.perf_counter() - t0:.1f}s "
               f"({st.truncated} truncated to max_length {cfg.data.max_length}, {st.skipped} blank skipped)")
    if len(ds) == 0:
        raise ConfigError(f"data.dataset: '{cfg.data.dataset}' [{split}] has no examples to encode")
    keys = ("input_ids", "attention_mask", "cond_mask")

    def rows(a: int, b: int) -> dict:
        return {k: torch.stack([ds[i][k] for i in range(a, b)]) for k in keys}

    if stats:
        n_max = min(len(ds), stats_examples)
        batches = ({k: v.to(dev) for k, v in rows(a, min(a + batch_size, n_max)).items()}
                   for a in range(0, n_max, batch_size))
        mean, std, n = measure_latent_stats(enc, batches)
        typer.echo(f"raw latent mean {mean:.4f}, std {std:.4f} over {n} valid positions of {n_max} examples "
                   f"({cfg.encoder.mode} {cfg.encoder.source})")
        typer.echo(f"set in the recipe:\n  encoder:\n    latent_mean: {mean:.4f}\n    latent_std: {std:.4f}")
        return

    path = Path(out or cfg.data.latent_cache or cfg.resolved_run_dir() / "latents")
    path.mkdir(parents=True, exist_ok=True)
    manifest = {**expected_manifest(cfg, split, dtype), "latent_dim": enc.latent_dim, "vocab_size": enc.vocab_size,
                "shards": [], "complete": False}
    if (path / "manifest.json").is_file():
        old = read_manifest(path)
        check_manifest(old, cfg, split)
        if old.get("dtype") != dtype:
            raise ConfigError(f"--dtype: the cache at {path} is {old.get('dtype')}; pass --dtype {old.get('dtype')} "
                              f"or choose another --out")
        if old.get("complete"):
            typer.echo(f"latent cache {path} is complete ({len(LatentCacheDataset(path))} examples); nothing to do")
            return
        manifest = prepare_resume(path, old)
    else:
        manifest = prepare_resume(path, manifest)  # clears torn files left by a run that never wrote a manifest
    write_manifest(path, manifest)
    shard = cfg.data.shard_size
    done = sum(s["count"] for s in manifest["shards"])
    if done:
        typer.echo(f"resuming: {len(manifest['shards'])} finished shards ({done} examples) kept")
    store = getattr(torch, dtype)
    tokens, t0, rate = 0, time.perf_counter(), ""
    tty = sys.stdout.isatty()
    progress = None
    if tty:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("encode"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn())
        task = progress.add_task("encode", total=len(ds), completed=done, rate="")
        progress.start()
    try:
        for start in range(done, len(ds), shard):
            stop = min(start + shard, len(ds))
            parts: dict[str, list] = {k: [] for k in (*keys, "latents")}
            for b0 in range(start, stop, batch_size):
                b = rows(b0, min(b0 + batch_size, stop))
                with torch.no_grad():
                    x = enc(b["input_ids"].to(dev), encoder_attention_mask(b["attention_mask"], b["cond_mask"]).to(dev))
                for k in keys:
                    parts[k].append(b[k])
                parts["latents"].append(x.to("cpu", store))
                tokens += int(b["attention_mask"].sum())
                rate = f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f} tok/s"
                if progress:
                    progress.update(task, completed=min(b0 + batch_size, stop), rate=rate)
            name = write_shard(path, len(manifest["shards"]), {k: torch.cat(v) for k, v in parts.items()})
            manifest["shards"].append({"file": name, "count": stop - start})
            write_manifest(path, manifest)
            if not tty:
                typer.echo(f"shard {name}: {stop}/{len(ds)} examples, {rate}", err=False)
    finally:
        if progress:
            progress.stop()
    manifest.update(complete=True, count=len(ds), truncated=st.truncated, skipped=st.skipped)
    write_manifest(path, manifest)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    typer.echo(f"done: {len(ds)} examples ({len(ds) - done} encoded now), {tokens} tokens in {dt:.1f}s "
               f"({tokens / max(dt, 1e-9):.0f} tok/s), {st.truncated} truncated, {st.skipped} skipped, "
               f"total {time.perf_counter() - t_start:.1f}s, peak RSS {rss:.2f} GiB -> {path}")

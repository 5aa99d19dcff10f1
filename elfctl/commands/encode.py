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
    import time

    import torch

    from elfctl.config import load_config
    from elfctl.data.encode_latents import KEYS, check_encodable, encode_to_cache
    from elfctl.data.encoders import build_encoder, measure_latent_stats
    from elfctl.data.tokenize import load_tokenizer
    from elfctl.errors import ConfigError
    from elfctl.rundir.device import pick_device

    if batch_size < 1 or stats_examples < 1:
        raise ConfigError("--batch-size and --stats-examples must be at least 1")
    cfg = load_config(recipe, overrides or [])
    split = split or cfg.data.train_split
    if not stats:
        check_encodable(cfg, dtype)  # before the encoder loads
    dev = pick_device(device)
    t_start = time.perf_counter()
    tok = load_tokenizer(cfg.encoder, cfg.data.data_dir)
    enc = build_encoder(cfg.encoder, tok, cfg.data.data_dir).to(dev).eval()

    if stats:
        from elfctl.data.dataset import build_dataset

        ds = build_dataset(cfg, split, tok)
        if len(ds) == 0:
            raise ConfigError(f"data.dataset: '{cfg.data.dataset}' [{split}] has no examples to measure")
        n_max = min(len(ds), stats_examples)
        batches = ({k: torch.stack([ds[i][k] for i in range(a, min(a + batch_size, n_max))]).to(dev) for k in KEYS}
                   for a in range(0, n_max, batch_size))
        mean, std, n = measure_latent_stats(enc, batches)
        typer.echo(f"raw latent mean {mean:.4f}, std {std:.4f} over {n} valid positions of {n_max} examples "
                   f"({cfg.encoder.mode} {cfg.encoder.source})")
        typer.echo(f"set in the recipe:\n  encoder:\n    latent_mean: {mean:.4f}\n    latent_std: {std:.4f}")
        return

    path = Path(out or cfg.data.latent_cache or cfg.resolved_run_dir() / "latents")
    r = encode_to_cache(cfg, path, split=split, dtype=dtype, batch_size=batch_size, device=dev, encoder=enc,
                        tokenizer=tok, echo=typer.echo)
    if r.already_complete:
        return
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    typer.echo(f"done: {r.examples} examples ({r.encoded_now} encoded now), {r.tokens} tokens in {r.seconds:.1f}s "
               f"({r.tokens / max(r.seconds, 1e-9):.0f} tok/s), {r.truncated} truncated, {r.skipped} skipped, "
               f"total {time.perf_counter() - t_start:.1f}s, peak RSS {rss:.2f} GiB -> {path}")

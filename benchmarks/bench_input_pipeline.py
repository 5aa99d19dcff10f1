"""Tokenization throughput (1 and 2 processes) and the input pipeline alone (no model) against a training step.

usage: python benchmarks/bench_input_pipeline.py --corpus FILE.jsonl [--tokenizer builtin:minilm]
           [--procs 1 2] [--shapes 64x32 512x1024] [--workers 0 2] [--batches 40] [--step-shape 64x32]

1. Tokenize ``--corpus`` (JSONL ``{"text"}``; e.g. the corpora ``bench_data_memory.py`` writes) into a fresh token
   cache with ``data.tokenize_workers`` = each of ``--procs``, packing on (max_length 1024, as the owt recipe):
   output tokens per second of the whole build (reading the file, tokenizing, writing Arrow).
2. The input pipeline alone: the training DataLoader (BatchOrder shuffle, ``data.num_workers`` = each of
   ``--workers``) over that cache, for each ``--shapes`` BxL, timing ``--batches`` batches after 3 warm-up ones.
3. One training step of elf-tiny at width 256 (the quickstart model) on ``--step-shape`` with a frozen latent
   input (data excluded), for comparison.
Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def tokenize_rate(corpus: Path, tokenizer: str, procs: int, max_length: int) -> tuple[float, object]:
    import elfctl.data.tokenized as tk
    from elfctl.config import load_config
    from elfctl.data.tokenize import load_tokenizer

    cache = Path(tempfile.mkdtemp(prefix="elfctl-bench-tok-"))
    tk.cache_root = lambda data_dir=None: cache  # a fresh token cache; assets still come from the usual one
    cfg = load_config(None, [f"encoder.source={tokenizer}", f"data.dataset={corpus}", f"data.max_length={max_length}",
                             "data.packing=true", "data.val_fraction=0", f"data.tokenize_workers={procs}"])
    tok = load_tokenizer(cfg.encoder)
    t0 = time.perf_counter()
    ds = tk.build_tokenized(cfg, "train", tok)
    seconds = time.perf_counter() - t0
    manifest = json.loads((ds.files[0].parent / "manifest.json").read_text())
    return manifest["tokens"] / seconds, (cfg, tok, cache, manifest["tokens"], seconds)


def loader_rate(ds, batch: int, workers: int, batches: int) -> float:
    from elfctl.data.loader import training_loader
    from elfctl.data.order import BatchOrder

    order = BatchOrder(len(ds), batch, 1, seed=0)
    it = iter(training_loader(ds, order, start=0, stop=batches + 3, rank=0, grad_accum=1, num_workers=workers))
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t0)


def step_seconds(batch: int, length: int, steps: int = 3) -> float:
    import torch

    from elfctl.config import load_config
    from elfctl.model import build_model
    from elfctl.objective import ElfObjective
    from elfctl.train.optim import EMA, Optimizers

    cfg = load_config("quickstart", [f"data.max_length={length}"])
    model = build_model(cfg.model, 384, 30522)
    opt = Optimizers(cfg.optim, [model], lr=1e-3, total_steps=100)
    ema = EMA(model, 0.99)
    obj = ElfObjective.from_config(cfg)
    x = torch.randn(batch, length, 384)
    ids = torch.randint(0, 30522, (batch, length))
    am = torch.ones(batch, length, dtype=torch.bool)
    cm = torch.zeros(batch, length, dtype=torch.bool)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = obj(model, x, ids, am, cm)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        ema.update(model, count=1)
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", default="builtin:minilm")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", nargs="*", default=["64x32", "512x1024"])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--step-shape", default="64x32", help="BxL of the training step, or 'none'")
    args = ap.parse_args()
    built = None
    for p in args.procs:
        rate, info = tokenize_rate(Path(args.corpus), args.tokenizer, p, 1024)
        cfg, tok, cache, tokens, seconds = info
        print(json.dumps({"what": "tokenize", "processes": p, "tokens": tokens, "seconds": round(seconds, 1),
                          "tokens_per_s": round(rate)}), flush=True)
        if built is None:
            built = cache
        else:
            shutil.rmtree(cache, ignore_errors=True)
    import elfctl.data.tokenized as tk

    tk.cache_root = lambda data_dir=None: built
    for shape in args.shapes:
        b, length = map(int, shape.split("x"))
        cfg2 = cfg.data.__class__(**{**cfg.data.__dict__, "max_length": length})
        cfg.data = cfg2
        ds = tk.build_tokenized(cfg, "train", tok)  # length changes the key: one more (timed separately) build
        for w in args.workers:
            r = loader_rate(ds, b, w, args.batches)
            print(json.dumps({"what": "input pipeline", "batch": b, "length": length, "workers": w,
                              "batches_per_s": round(r, 1), "tokens_per_s": round(r * b * length)}), flush=True)
    if args.step_shape == "none":
        shutil.rmtree(built, ignore_errors=True)
        return
    b, length = map(int, args.step_shape.split("x"))
    s = step_seconds(b, length)
    print(json.dumps({"what": "train step (quickstart model, no data)", "batch": b, "length": length,
                      "seconds": round(s, 3), "steps_per_s": round(1 / s, 2), "tokens_per_s": round(b * length / s)}),
          flush=True)
    shutil.rmtree(built, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Where a training step's time goes, phase by phase, on a recipe's real data and encoder.

    python benchmarks/profile_train_step.py                         # quickstart, encoder run on the fly
    python benchmarks/profile_train_step.py --latent-cache DIR      # reading a latent cache (no encoder forward)
    python benchmarks/profile_train_step.py --no-malloc-tuning      # glibc's default allocator behaviour

Phases: batch (collate), encode (frozen encoder forward, ~0 with a cache), fwd (the objective: helper passes and
the trained pass), bwd, clip, opt (optimizer step), ema. Mean ms over --steps steps after --warmup steps.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", nargs="?", default="quickstart")
    ap.add_argument("overrides", nargs="*", help="section.key=value")
    ap.add_argument("--latent-cache", default=None)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-malloc-tuning", action="store_true")
    args = ap.parse_args()

    from elfctl.config import load_config
    from elfctl.model import build_model
    from elfctl.objective import ElfObjective
    from elfctl.train.optim import EMA, Optimizers
    from elfctl.train.trainer import DataSource

    if not args.no_malloc_tuning:
        from elfctl.cpu_allocator import keep_freed_memory

        keep_freed_memory()
    over = list(args.overrides) + ["data.precompute_latents=false"]
    if args.latent_cache:
        over.append(f"data.latent_cache={args.latent_cache}")
    cfg = load_config(args.recipe, over)
    dev = torch.device("cpu")
    data = DataSource(cfg, Path(tempfile.mkdtemp()), dev, log=lambda s: None)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.encoder.latent_dim, data.encoder.vocab_size)
    opt = Optimizers(cfg.optim, [model], lr=cfg.optim.peak_lr(cfg.train.batch_size), total_steps=cfg.train.steps)
    ema = EMA(model, cfg.optim.ema_decay)
    objective = ElfObjective.from_config(cfg)
    B, n = cfg.train.batch_size, len(data.dataset)
    phases = ["batch", "encode", "fwd", "bwd", "clip", "opt", "ema"]
    total = dict.fromkeys(phases, 0.0)
    params = list(model.parameters())
    for s in range(args.warmup + args.steps):
        marks = [time.perf_counter()]
        batch = data.batch([(s * B + i) % n for i in range(B)], dev)
        marks.append(time.perf_counter())
        x = data.latents(batch, None)
        marks.append(time.perf_counter())
        out = objective(model, x, batch["input_ids"], batch["attention_mask"], batch["cond_mask"])
        marks.append(time.perf_counter())
        out.loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip or float("inf"))
        marks.append(time.perf_counter())
        opt.step()
        opt.zero_grad()
        marks.append(time.perf_counter())
        ema.update(model, count=1)
        marks.append(time.perf_counter())
        if s >= args.warmup:
            for name, a, b in zip(phases, marks, marks[1:]):
                total[name] += b - a
    ms = {k: 1000 * v / args.steps for k, v in total.items()}
    print(f"{args.recipe} {' '.join(args.overrides)} | threads {torch.get_num_threads()} | "
          + "  ".join(f"{k} {v:.0f} ms" for k, v in ms.items()) + f"  | step {sum(ms.values()):.0f} ms")


if __name__ == "__main__":
    main()

"""A distillation step against a base training step at the same shapes (model, batch, length, latent width).

    python benchmarks/bench_distill_step.py                                  # quickstart shapes on the CPU
    python benchmarks/bench_distill_step.py owt --device cuda --rounds 16 1  # ELF-B at 1024 tokens on a GPU

One step = objective (helper / teacher passes and the trained pass) + backward + clip + optimizer + EMA, on
random latents and tokens of the recipe's shapes (data loading is not part of either). The distillation step's
teacher passes run under no_grad (bf16 autocast on CUDA); the teacher makes K + 1 forwards per row, K =
teacher_steps / N, so the cost grows with K. Median ms over --steps steps after --warmup.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", nargs="?", default="quickstart")
    ap.add_argument("overrides", nargs="*", help="section.key=value")
    ap.add_argument("--rounds", type=int, nargs="*", default=None, help="student step counts (default: the "
                    "recipe's distill.rounds)")
    ap.add_argument("--latent-dim", type=int, default=None, help="default: 384 (quickstart's MiniLM) or 512 (t5)")
    ap.add_argument("--vocab", type=int, default=None, help="default: 30522 (MiniLM) or 32100 (t5-small)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    from elfctl.config import load_config
    from elfctl.distill_objective import DistillObjective
    from elfctl.model import build_model
    from elfctl.objective import ElfObjective
    from elfctl.train.optim import EMA, Optimizers

    cfg = load_config(args.recipe, args.overrides)
    dev = torch.device(args.device)
    t5 = "t5" in cfg.encoder.source
    C = args.latent_dim or (512 if t5 else 384)
    V = args.vocab or (32100 if t5 else 30522)
    B, L = cfg.train.batch_size // cfg.train.grad_accum, cfg.data.max_length
    bf16 = dev.type == "cuda" and cfg.train.bf16
    torch.manual_seed(0)
    x = torch.randn(B, L, C, device=dev)
    ids = torch.randint(0, V, (B, L), device=dev)
    am = torch.ones(B, L, dtype=torch.bool, device=dev)
    cm = torch.zeros(B, L, dtype=torch.bool, device=dev)

    def time_steps(objective) -> float:
        torch.manual_seed(0)
        model = build_model(cfg.model, C, V).to(dev).train()
        opt = Optimizers(cfg.optim, [model], lr=cfg.optim.peak_lr(cfg.train.batch_size), total_steps=100)
        ema = EMA(model, cfg.optim.ema_decay)
        params = list(model.parameters())
        times = []
        for s in range(args.warmup + args.steps):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = objective(model, x, ids, am, cm)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            opt.step()
            opt.zero_grad()
            ema.update(model, count=1)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if s >= args.warmup:
                times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)

    base = time_steps(ElfObjective.from_config(cfg))
    print(f"{cfg.name}: {cfg.model.preset}, batch {B} x {L} tokens, C {C}, vocab {V}, device {dev}, "
          f"{torch.get_num_threads()} threads")
    print(f"base training step: {base:.0f} ms")
    teacher = build_model(cfg.model, C, V).to(dev)
    for n in args.rounds or cfg.distill.rounds:
        obj = DistillObjective(cfg.objective, teacher, student_steps=n, teacher_steps=cfg.distill.teacher_steps,
                               prediction=cfg.model.prediction, use_sc_cfg=cfg.model.num_sc_cfg_tokens > 0,
                               pad_token=cfg.data.pad_token, sub_step_schedule=cfg.distill.sub_step_schedule,
                               teacher_bf16=cfg.train.bf16)
        ms = time_steps(obj)
        print(f"distillation step, N = {n:2d} (K = {obj.sub_steps:2d} teacher sub-steps): {ms:.0f} ms "
              f"({ms / base:.1f}x base)")


if __name__ == "__main__":
    main()

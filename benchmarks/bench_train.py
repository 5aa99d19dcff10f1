"""Training throughput: tokens/s, peak memory and (on GPU) model-FLOPs utilisation of one ELF train step.

    python benchmarks/bench_train.py                      # elf-tiny on the CPU (latent 384, length 64)
    python benchmarks/bench_train.py --preset elf-b --length 1024 --batch 32 --latent-dim 512 --vocab 32128

Measures the full objective (self-conditioning and SC-CFG helper passes included) plus the optimizer step
on synthetic latents, so data loading and the text encoder are excluded. MFU counts the FLOPs the step
really runs: 6·N per token for the trained pass, 2·N per token for each helper-pass row, plus attention
(12·depth·L·hidden per token for fwd+bwd, 4·… per helper row), divided by the device's peak bf16 FLOP/s
(--peak-tflops; 989 for an H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from elfctl.config import load_config
from elfctl.model import build_model, count_parameters
from elfctl.objective import ElfObjective
from elfctl.train.optim import EMA, Optimizers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="elf-tiny")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(None, [f"model.preset={args.preset}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, args.latent_dim, args.vocab).to(device)
    opt = Optimizers(cfg.optim, [model], lr=1e-3, total_steps=args.steps)
    ema = EMA(model, 0.9999)
    objective = ElfObjective(cfg.objective)
    fwd = torch.compile(model) if args.compile else model
    B, L, C = args.batch, args.length, args.latent_dim
    x = torch.randn(B, L, C, device=device) * 0.5
    ids = torch.randint(0, args.vocab, (B, L), device=device)
    am = torch.ones(B, L, dtype=torch.bool, device=device)
    cm = torch.zeros(B, L, dtype=torch.bool, device=device)
    bf16 = device.type == "cuda"

    def step() -> int:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            d = objective.draw(x)
            out = objective(fwd, x, ids, am, cm, draws=d, helper_model=fwd)
            out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        ema.update(model)
        sc = int((d.sc_rows & ~d.decode_rows).sum())
        return sc

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    helper_rows = 0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        helper_rows += step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0

    n = count_parameters(model)
    depth, hidden = len(model.blocks), model.hidden_size
    tokens = B * L * args.steps
    attn = depth * L * hidden
    flops = tokens * (6 * n + 12 * attn) + helper_rows * 2 * L * (2 * n + 4 * attn)  # 2 helper passes per sc row
    peak_mem = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    res = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
           "preset": args.preset, "params_M": round(n / 1e6, 2), "batch": B, "length": L, "latent_dim": C,
           "compile": args.compile, "step_s": round(dt / args.steps, 4), "tokens_per_s": round(tokens / dt, 1),
           "peak_mem_GiB": round(peak_mem, 3), "torch": torch.__version__}
    if device.type == "cuda":
        res["mfu_pct"] = round(100 * flops / dt / (args.peak_tflops * 1e12), 1)
    print("| " + " | ".join(res) + " |")
    print("|" + "---|" * len(res))
    print("| " + " | ".join(str(v) for v in res.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()

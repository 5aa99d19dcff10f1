"""Sampling throughput, and the sampler's own overhead against the bare network loop.

    python benchmarks/bench_sampling.py                       # elf-tiny on the CPU: batch 16, length 64, C 384
    python benchmarks/bench_sampling.py --preset elf-b --length 1024 --batch 64 --latent-dim 512 --vocab 32128

Times N-step SDE sampling (random weights: speed does not depend on them) and the same network called in a
bare loop with the same number of forwards and shapes and no sampler logic. Overhead = sampler / bare − 1
(target < 5%). On CUDA the network runs under bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from elfctl.config import load_config
from elfctl.flow import FlowPath
from elfctl.model import build_model
from elfctl.sampling.sampler import EulerSampler, SamplerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="elf-tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(None, [f"model.preset={args.preset}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, args.latent_dim, args.vocab).to(device).eval()
    torch.nn.init.normal_(model.flow_head.weight, std=0.02)
    settings = SamplerSettings(steps=args.steps, sampler="sde", gamma=1.5, sc_cfg=3.0)
    sampler = EulerSampler(model, FlowPath(), settings)
    B, L, C = args.batch, args.length, args.latent_dim
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_sampler():
        with amp:
            sampler.sample(B, L, C, seed=0, device=device)

    z = torch.randn(B, L, C, device=device)
    t = torch.full((B,), 0.5, device=device)
    w = torch.full((B,), 3.0, device=device)

    @torch.no_grad()
    def run_bare():
        with amp:
            x = torch.zeros_like(z)
            for _ in range(args.steps):
                x, _ = model(z, t, x_sc=x, sc_cfg=w)
            model(z, t, x_sc=torch.zeros_like(z), sc_cfg=w, decode=True)

    res = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
           "preset": args.preset, "batch": B, "length": L, "steps": args.steps}
    for name, fn in (("sampler", run_sampler), ("bare", run_bare)):
        fn()
        sync()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        res[f"{name}_s"] = round(min(times), 4)
    res["samples_per_s"] = round(B / res["sampler_s"], 2)
    res["tokens_per_s"] = round(B * L / res["sampler_s"], 1)
    res["overhead_pct"] = round(100 * (res["sampler_s"] / res["bare_s"] - 1), 1)
    print("| " + " | ".join(res) + " |\n|" + "---|" * len(res))
    print("| " + " | ".join(str(v) for v in res.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()

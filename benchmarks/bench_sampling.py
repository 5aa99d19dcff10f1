"""Sampling throughput, and the sampler's own overhead against the bare network loop.

    python benchmarks/bench_sampling.py                     # CPU: elf-tiny, batch 16, length 64, latent 384
    python benchmarks/bench_sampling.py --json bench.json   # also write the rows as JSON
    python benchmarks/bench_sampling.py --cpu-only --ab --compile   # + the A/B workload, eager and compiled

Every row reports the sampler's fraction of this machine's GEMM rate, measured in the same run just before it:
the sampler's floating-point work (``torch.utils.flop_counter`` over one draw: matmuls and attention) per second,
over a 2048³ fp32 ``torch.matmul`` on the same threads (CUDA: bf16). A regression shows as a smaller fraction, whatever
the machine's speed that day. ``--ab`` adds the shape of the A/B comparison with the authors' sampler in
docs/BENCHMARKS.md (depth 6, width 256, 4 heads, 17.3M parameters, 32 steps, batch 16, length 64, vocabulary 30,522);
``--compile`` adds each CPU row again with ``torch.compile`` (``sample.compile``), compile time excluded.

On the CPU: elf-tiny with random weights, N-step SDE sampling, against the same
network called in a bare loop with the same number of forwards (N denoise + 1 decode), the same shapes (on the
CPU: the very inputs the sampler produced, replayed) and no sampler logic. overhead = sampler / bare − 1
(target < 5%). An ODE row separates the churn noise (drawn with torch.Generator on the CPU, where it is the
bulk of the overhead) from the rest of the sampler.
On CUDA it also runs ELF-B at length 1024, batch 64 and 256, as `elfctl sample` does there: bf16 autocast inside the
sampler (``sample.bf16``), TF32 for the fp32 matmuls, Triton kernels with noise drawn in-kernel. Runs are interleaved
and the minimum of ``--repeats`` is kept.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from elfctl.config import load_config
from elfctl.cpu_allocator import keep_freed_memory
from elfctl.kernels import ops as kernels
from elfctl.flow import FlowPath
from elfctl.model import build_model, count_parameters
from elfctl.sampling.precision import apply_precision, precision_label
from elfctl.sampling.sampler import EulerSampler, SamplerSettings


# The A/B comparison's network (docs/BENCHMARKS.md, "CPU sampling against the authors' sampler")
AB_SHAPE = ["model.depth=6", "model.hidden_size=256", "model.num_heads=4"]


def gemm_rate(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """This machine's dense GEMM rate now, GFLOP/s: median of ``repeats`` n³ matmuls (fp32 CPU, bf16 CUDA)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e9


def bench(preset: str, B: int, L: int, C: int, vocab: int, steps: int, sampler: str, repeats: int,
          device: torch.device, shape: tuple[str, ...] = (), compile_model: bool = False) -> dict:
    cfg = load_config(None, [f"model.preset={preset}", f"sample.steps={steps}", f"sample.sampler={sampler}",
                             f"sample.gamma={1.5 if sampler == 'sde' else 0.0}", "sample.sc_cfg=3.0", *shape])
    torch.manual_seed(0)
    model = build_model(cfg.model, C, vocab).to(device).eval()
    for prm in model.parameters():  # weights of a trained scale (a zero flow head would make every step trivial)
        if prm.dim() > 1:
            torch.nn.init.normal_(prm, std=0.02)
    apply_precision(device, cfg.sample.bf16)  # the commands' one precision policy
    if device.type == "cpu":
        keep_freed_memory()  # as `elfctl sample` does on the CPU
    settings = SamplerSettings.from_config(cfg)
    path = FlowPath.from_config(cfg)
    net = torch.compile(model) if compile_model else model  # the bare loop runs the same module
    elf_sampler = EulerSampler(net, path, settings)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    z = torch.randn(B, L, C, device=device)
    t = torch.full((B,), 0.5, device=device)
    w = torch.full((B,), 3.0, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def run_sampler():  # the sampler enters bf16 autocast itself on CUDA (sample.bf16)
        elf_sampler.sample(B, L, C, seed=0, device=device)

    # The bare loop: on the CPU it replays the exact inputs of one sampler run (CPU kernels are value-dependent:
    # subnormals make a synthetic loop slower than the real one); on CUDA (memory) it loops on a fixed z.
    replay = []
    if device.type == "cpu":
        class Recorder(torch.nn.Module):
            def forward(self, z_, t_, **kw):
                replay.append((z_.clone(), t_.clone(), {k: v.clone() if torch.is_tensor(v) else v
                                                        for k, v in kw.items()}))
                return net(z_, t_, **kw)

        with torch.no_grad():
            EulerSampler(Recorder(), path, settings).sample(B, L, C, seed=0, device=device)

    @torch.no_grad()
    def run_bare():
        with amp:
            if replay:
                for z_, t_, kw in replay:
                    net(z_, t_, **kw)
                return
            x = torch.zeros_like(z)
            for _ in range(steps):
                x, _ = net(z, t, x_sc=x, sc_cfg=w)
            net(z, t, x_sc=torch.zeros_like(z), sc_cfg=w, decode=True)

    times = {"sampler": [], "bare": []}
    for fn in (run_sampler, run_bare):  # warm-up (and Triton compilation)
        fn()
    sync()
    for _ in range(repeats):
        for name, fn in (("sampler", run_sampler), ("bare", run_bare)):
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    s, b = min(times["sampler"]), min(times["bare"])
    with FlopCounterMode(display=False) as counter:
        run_sampler()
    gflop = counter.get_total_flops() / 1e9
    rate = gemm_rate(device)
    name = preset + (" (A/B shape)" if shape else "") + (" compiled" if compile_model else "")
    return {"preset": name, "params_m": round(count_parameters(model) / 1e6, 2),
            "sampler": f"{sampler} {steps} steps", "batch": B, "length": L, "latent": C,
            "sampler_s": round(s, 4), "bare_s": round(b, 4), "samples_per_s": round(B / s, 2),
            "tokens_per_s": round(B * L / s, 1), "overhead_pct": round(100 * (s / b - 1), 1),
            "gflop": round(gflop, 1), "gflop_per_s": round(gflop / s, 1), "gemm_gflop_per_s": round(rate, 1),
            "gemm_fraction_pct": round(100 * gflop / s / rate, 1),
            "kernels": kernels.resolve_backend(z), "precision": precision_label(device, settings.bf16)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu-only", action="store_true", help="skip the CUDA rows even when a GPU is present")
    ap.add_argument("--json", default=None, help="write the rows (and the device) to this file")
    ap.add_argument("--ab", action="store_true", help="add the A/B comparison's shape (depth 6, width 256)")
    ap.add_argument("--compile", action="store_true", help="add each CPU row compiled (torch.compile)")
    args = ap.parse_args()

    cpu = torch.device("cpu")
    shapes = [()] + ([tuple(AB_SHAPE)] if args.ab else [])
    rows = [bench("elf-tiny", 16, 64, 384, 30522, args.steps, sampler, args.repeats, cpu, shape, compiled)
            for shape in shapes for compiled in ((False, True) if args.compile else (False,))
            for sampler in ("sde", "ode")]
    devices = {"cpu": f"cpu ({torch.get_num_threads()} threads)"}
    if torch.cuda.is_available() and not args.cpu_only:
        gpu = torch.device("cuda")
        devices["cuda"] = torch.cuda.get_device_name()
        for B in (64, 256):
            rows.append(bench("elf-b", B, 1024, 768, 32100, args.steps, "sde", max(2, args.repeats // 2), gpu))
    for r in rows:
        r["device"] = devices["cuda" if r["kernels"] == "triton" or r["preset"] == "elf-b" else "cpu"]
    keys = ["device", "preset", "params_m", "sampler", "batch", "length", "latent", "samples_per_s", "tokens_per_s",
            "sampler_s", "bare_s", "overhead_pct", "gflop_per_s", "gemm_gflop_per_s", "gemm_fraction_pct", "kernels",
            "precision"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"devices": devices, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

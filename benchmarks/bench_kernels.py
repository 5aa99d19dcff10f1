"""Fused sampling kernels vs the eager PyTorch chain vs torch.compile of it, with achieved bandwidth.

    python benchmarks/bench_kernels.py [--json out.json]

On CUDA: B×L×512 for B in {64, 256}, L in {128, 1024}, fp32 and bf16; median time over repeats (CUDA events),
GB/s = bytes read + written / time, beside a device-to-device copy of the same bytes. Without CUDA: runs the
correctness half (Triton through TRITON_INTERPRET=1 on a small shape, against the reference) and says that
timing needs a GPU. Targets (issue 7): ≥ 80% of copy bandwidth, ≥ 2× over eager.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import torch


def _time(fn, reps=50):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def cpu_correctness() -> None:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    from elfctl.kernels import guidance_step, sde_noise_inject
    from elfctl.kernels.reference import guidance_step_ref

    xc, xu, z = (torch.randn(2, 16, 64) for _ in range(3))
    got = guidance_step(xc, xu, z, scale=2.0, t=0.3, t_next=0.4, t_eps=0.05, backend="triton")
    want = guidance_step_ref(xc, xu, z, scale=2.0, t=0.3, t_next=0.4, t_eps=0.05)
    err = max((g - w).abs().max().item() for g, w in zip(got, want))
    eps = sde_noise_inject(torch.zeros(1, 128, 256), alpha=0.0, noise_scale=1.0, seed=0, offset=0, backend="triton")
    print(f"CPU (interpreted Triton): guidance max |diff| vs reference {err:.2e}; noise mean {eps.mean():.4f} "
          f"std {eps.std():.4f}. Timing needs a CUDA GPU.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        cpu_correctness()
        return
    from elfctl.kernels.reference import guidance_step_ref, sde_noise_inject_ref
    from elfctl.kernels.triton_guidance import guidance_step_triton
    from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton

    compiled_g = torch.compile(guidance_step_ref)
    compiled_n = torch.compile(sde_noise_inject_ref)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for B in (64, 256):
            for L in (128, 1024):
                shape = (B, L, 512)
                xc, xu, z, cl = (torch.randn(shape, device="cuda", dtype=dtype) for _ in range(4))
                cm = torch.rand(B, L, device="cuda") < 0.2
                noise = torch.randn(shape, device="cuda", dtype=torch.float32)
                esize = xc.element_size()
                n = xc.numel()
                kw = dict(scale=2.0, t=0.3, t_next=0.35, t_eps=0.05, cond_latents=cl, cond_mask=cm)
                g_bytes = n * esize * 6 + B * L  # read xc, xu, z, cond; write z, x; mask
                n_bytes = n * esize * 3 + B * L   # read z, cond; write z_b (noise drawn in-kernel)
                src, dst = torch.empty(g_bytes, dtype=torch.uint8, device="cuda"), torch.empty(
                    g_bytes, dtype=torch.uint8, device="cuda")
                t_copy = _time(lambda: dst.copy_(src)) / 2  # copy reads + writes: bytes moved = 2·g_bytes
                res = {"dtype": str(dtype).split(".")[-1], "B": B, "L": L,
                       "copy_GBps": g_bytes / t_copy / 1e9}
                for name, fn in (("eager", lambda: guidance_step_ref(xc, xu, z, **kw)),
                                 ("compile", lambda: compiled_g(xc, xu, z, **kw)),
                                 ("triton", lambda: guidance_step_triton(xc, xu, z, **kw))):
                    t = _time(fn)
                    res[f"guidance_{name}_us"] = t * 1e6
                    res[f"guidance_{name}_GBps"] = g_bytes / t / 1e9
                for name, fn in (("eager", lambda: sde_noise_inject_ref(z, alpha=0.9, noise_scale=2.0,
                                                                        noise=torch.randn_like(noise),
                                                                        cond_latents=cl, cond_mask=cm)),
                                 ("compile", lambda: compiled_n(z, alpha=0.9, noise_scale=2.0,
                                                                noise=torch.randn_like(noise), cond_latents=cl,
                                                                cond_mask=cm)),
                                 ("triton", lambda: sde_noise_inject_triton(z, alpha=0.9, noise_scale=2.0, seed=1,
                                                                            offset=0, cond_latents=cl,
                                                                            cond_mask=cm))):
                    t = _time(fn)
                    res[f"noise_{name}_us"] = t * 1e6
                    res[f"noise_{name}_GBps"] = n_bytes / t / 1e9
                rows.append(res)
    keys = list(rows[0])
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

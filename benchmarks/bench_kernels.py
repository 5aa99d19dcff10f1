"""Benchmark the fused sampling kernels against the PyTorch reference.

On CUDA: for B×L×C latents (B in {64, 256}, L in {128, 1024}, C = 512), fp32 and bf16, times

* ``eager``   — the reference chain in eager PyTorch (``elfctl.kernels.reference``),
* ``compile`` — ``torch.compile`` of the same reference,
* ``triton``  — the fused Triton kernel,

for both kernels (guidance step with CFG and a condition mask; SDE noise injection drawing its own noise, so the
eager/compiled references include their ``torch.randn``). Timing: CUDA events, warm-up, median of N. Achieved
bandwidth counts only the bytes a fused kernel must move: x_c, x_u and z read and z_next and x written (guidance),
z read and z_b written (SDE: the noise is drawn in registers), the condition latents of the condition positions
only (the kernels skip the others) and one mask byte per row; it is shown next to a measured device-to-device
copy (``dst.copy_(src)``) of the same byte count. Prints a markdown table; ``--json OUT`` saves it.
Targets (issue 7): Triton at >= 80% of the copy bandwidth and >= 2x over eager; the table's last two columns.
``torch.compile`` runs with automatic dynamic shapes (one recompile per kernel and dtype, not one per shape).

Without CUDA: checks the Triton kernels (interpreted, ``TRITON_INTERPRET=1``) against the reference on a tiny
shape and says that timing needs a GPU.

    python benchmarks/bench_kernels.py [--iters 50] [--warmup 10] [--json results.json] [--no-compile]
        [--batches 64 256] [--lengths 128 1024] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from typing import Callable

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any Triton kernel is decorated

from elfctl.atomic import atomic_write_json  # noqa: E402
from elfctl.kernels.ops import guidance_step, reference_noise, sde_noise_inject  # noqa: E402
from elfctl.kernels.dispatch import triton_import_error  # noqa: E402
from elfctl.kernels.reference import guidance_step_ref, sde_noise_inject_ref  # noqa: E402

STEP = dict(scale=2.5, t=0.3, t_next=0.35, t_eps=0.05)
SDE = dict(alpha=0.9, noise_scale=1.0)


def _inputs(B: int, L: int, C: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    xc, xu, z, cl = (torch.randn(B, L, C, generator=g, device=device, dtype=torch.float32).to(dtype)
                     for _ in range(4))
    cm = torch.rand(B, L, generator=g, device=device) < 0.25
    return xc, xu, z, cl, cm


# ------------------------------------------------------------------ timing
def _time_cuda(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs, each timed by its own pair of CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _copy_gbps(nbytes: int, warmup: int, iters: int) -> float:
    """Device-to-device copy bandwidth (read + write) for a copy moving ``nbytes`` in total."""
    half = max(nbytes // 2, 1)
    src = torch.empty(half, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = _time_cuda(lambda: dst.copy_(src), warmup, iters)
    return 2 * half / ms / 1e6


def _bytes_moved(kind: str, numel: int, rows: int, cond_rows: int, channels: int, itemsize: int) -> int:
    """Bytes a fused kernel must move (the benchmark runs guidance with CFG and a condition mask)."""
    cond = cond_rows * channels * itemsize + rows  # condition latents where the mask is on; the (B, L) mask
    if kind == "guidance":  # read x_c, x_u, z; write z_next, x
        return numel * itemsize * 5 + cond
    return numel * itemsize * 2 + cond  # read z; write z_b (noise drawn in registers)


def run_cuda(args) -> list[dict]:
    rows = []
    compiled_step = compiled_sde = None
    if not args.no_compile:
        compiled_step = torch.compile(guidance_step_ref)

        def sde_with_noise(z, cl, cm, seed, offset):
            noise = torch.randn(z.shape, device=z.device, dtype=torch.float32)  # the draw is part of the work
            return sde_noise_inject_ref(z, noise=noise, cond_latents=cl, cond_mask=cm, **SDE)

        compiled_sde = torch.compile(sde_with_noise)
    copy_cache: dict[int, float] = {}
    for dtype in (getattr(torch, name) for name in args.dtypes):
        for B in args.batches:
            for L in args.lengths:
                xc, xu, z, cl, cm = _inputs(B, L, args.channels, dtype, "cuda")
                # sanity: Triton agrees with the reference before it is timed
                got = guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton", **STEP)
                want = guidance_step_ref(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP)
                tol = 1e-5 if dtype == torch.float32 else 2e-2
                for a, b in zip(got, want):
                    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
                cond_rows = int(cm.sum())
                impls = {
                    "guidance": {
                        "eager": lambda: guidance_step_ref(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP),
                        "compile": (lambda: compiled_step(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP))
                        if compiled_step else None,
                        "triton": lambda: guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton",
                                                        **STEP),
                    },
                    "sde_noise": {
                        "eager": lambda: sde_noise_inject_ref(
                            z, noise=torch.randn(z.shape, device="cuda", dtype=torch.float32), cond_latents=cl,
                            cond_mask=cm, **SDE),
                        "compile": (lambda: compiled_sde(z, cl, cm, 0, 0)) if compiled_sde else None,
                        "triton": lambda: sde_noise_inject(z, seed=1, offset=0, cond_latents=cl, cond_mask=cm,
                                                           backend="triton", **SDE),
                    },
                }
                for kind, by_impl in impls.items():
                    nbytes = _bytes_moved(kind, z.numel(), B * L, cond_rows, args.channels, z.element_size())
                    if nbytes not in copy_cache:
                        copy_cache[nbytes] = _copy_gbps(nbytes, args.warmup, args.iters)
                    for impl, fn in by_impl.items():
                        if fn is None:
                            continue
                        ms = _time_cuda(fn, args.warmup, args.iters)
                        rows.append(dict(kernel=kind, impl=impl, dtype=str(dtype).replace("torch.", ""), B=B, L=L,
                                         C=args.channels, ms=ms, gbps=nbytes / ms / 1e6,
                                         copy_gbps=copy_cache[nbytes], bytes=nbytes))
                        print(f"  {kind:9s} {impl:7s} {rows[-1]['dtype']:8s} B={B:<4d} L={L:<5d} {ms:8.3f} ms",
                              file=sys.stderr, flush=True)
                del xc, xu, z, cl, cm
                torch.cuda.empty_cache()
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| kernel | impl | dtype | B×L×C | time (ms) | GB/s | copy GB/s | % of copy | speed-up vs eager |\n"
            "|---|---|---|---|---:|---:|---:|---:|---:|")
    eager = {(r["kernel"], r["dtype"], r["B"], r["L"]): r["ms"] for r in rows if r["impl"] == "eager"}
    lines = [head]
    for r in rows:
        base = eager.get((r["kernel"], r["dtype"], r["B"], r["L"]))
        lines.append(f"| {r['kernel']} | {r['impl']} | {r['dtype']} | {r['B']}×{r['L']}×{r['C']} | {r['ms']:.3f} | "
                     f"{r['gbps']:.0f} | {r['copy_gbps']:.0f} | {100 * r['gbps'] / r['copy_gbps']:.0f}% | "
                     f"{base / r['ms']:.2f}× |" if base else "")
    return "\n".join(lines)


# ------------------------------------------------------------------ no GPU: correctness only
def run_cpu_check() -> list[dict]:
    """Interpreted Triton vs the reference on a tiny shape; returns one row per check."""
    if triton_import_error() is not None:
        print(f"triton is not importable ({triton_import_error()}): nothing to check on this machine.")
        return []
    results = []
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        xc, xu, z, cl, cm = _inputs(2, 9, 24, dtype, "cpu")
        got = guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton", **STEP)
        want = guidance_step_ref(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP)
        err = max((a.float() - b.float()).abs().max().item() for a, b in zip(got, want))
        for a, b in zip(got, want):
            torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
        results.append(dict(check="guidance_step", dtype=str(dtype), max_abs_err=err))

        from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton

        out, eps = sde_noise_inject_triton(z, seed=5, offset=123, cond_latents=cl, cond_mask=cm, return_noise=True,
                                           **SDE)
        ref = sde_noise_inject_ref(z, noise=eps, cond_latents=cl, cond_mask=cm, **SDE)
        torch.testing.assert_close(out.float(), ref.float(), rtol=tol, atol=tol)
        results.append(dict(check="sde_noise_inject", dtype=str(dtype),
                            max_abs_err=(out.float() - ref.float()).abs().max().item()))
    # the reference's own draw is deterministic too
    assert torch.equal(reference_noise((2, 3), 1, 2), reference_noise((2, 3), 1, 2))
    print("| check | dtype | max abs error vs reference |\n|---|---|---:|")
    for r in results:
        print(f"| {r['check']} | {r['dtype'].replace('torch.', '')} | {r['max_abs_err']:.2e} |")
    print("\nTriton (interpreted) matches the reference. Timing needs a CUDA GPU: no timings on this machine.")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=50, help="timed runs per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"])
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--json", metavar="OUT", help="also save the results as JSON")
    args = p.parse_args(argv)
    meta = dict(torch=torch.__version__, python=platform.python_version())
    if torch.cuda.is_available():
        if triton_import_error() is not None:
            print(f"triton is not importable ({triton_import_error()})", file=sys.stderr)
            return 1
        import triton

        meta.update(device=torch.cuda.get_device_name(), triton=triton.__version__, iters=args.iters,
                    warmup=args.warmup)
        rows = run_cuda(args)
        print(f"\n{meta['device']}, torch {meta['torch']}, triton {meta['triton']}; median of {args.iters} runs\n")
        print(markdown(rows))
        payload = dict(meta=meta, mode="cuda", results=rows)
    else:
        meta.update(device="cpu")
        payload = dict(meta=meta, mode="cpu-correctness", results=run_cpu_check())
    if args.json:
        atomic_write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

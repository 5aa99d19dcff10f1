"""Training throughput: tokens/s, peak memory and (on GPU) model-FLOPs utilisation of one ELF train step.

    python benchmarks/bench_train.py                      # elf-tiny on the CPU (latent 384, length 64)
    python benchmarks/bench_train.py --recipe owt --device cuda --length 1024 --batch 32 --latent-dim 512 \\
        --vocab 32100 --compile                           # ELF-B as the owt recipe trains it, on a GPU

Runs what ``elfctl train`` runs per step, on synthetic latents (data loading and the text encoder excluded):
the objective built from the recipe (``ElfObjective.from_config``: prediction, SC-CFG, pad token, every
``objective.*`` setting) with its self-conditioning and SC-CFG helper passes, backward, clipping, the
recipe's optimizer and the EMA; bf16 autocast on CUDA when ``train.bf16`` (TF32 for the fp32 regions);
``--compile`` compiles each block in place exactly as ``train.compile`` does (``elfctl.train.compiled``).

MFU = FLOPs the steps really ran / time / peak bf16 FLOP/s. The FLOPs are counted per pass from what runs
(``elfctl.train.flops``): the trained pass forward and backward on all rows, the decode head only on the
decode-branch rows, each helper pass forward only on its rows, the 12 prefix tokens in the blocks. The usual
6·N·tokens is printed beside it (``mfu_naive_pct``) for comparison. Peak: ``--peak-tflops``, else a table of
known GPUs (H100/H200 SXM: 989 dense bf16).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from elfctl.atomic import atomic_write_json
from elfctl.config import load_config
from elfctl.errors import ConfigError
from elfctl.model import build_model, count_parameters
from elfctl.objective import ElfObjective
from elfctl import precision
from elfctl.train.compiled import compile_blocks
from elfctl.rundir.device import pick_device
from elfctl.train.flops import naive_step_flops, step_flops
from elfctl.train.optim import EMA, Optimizers

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name substring; the first match wins.
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
                    ("A10G", 125.0), ("RTX 4090", 165.0))


def peak_tflops(device_name: str) -> float | None:
    for key, peak in PEAK_BF16_TFLOPS:
        if key in device_name:
            return peak
    return None


def tf32_on(device: torch.device) -> bool:
    """The commands' one precision policy (``elfctl.precision``): TF32 for the fp32 matmuls on CUDA."""
    return precision.apply(precision.policy(device, True)).tf32


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=None, help="recipe whose model/objective/optim/train settings to use "
                    "(default: the built-in defaults)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override, as on the elfctl command line (repeatable)")
    ap.add_argument("--preset", default=None, help="model.preset (default: the recipe's, or elf-tiny)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--compile", action="store_true", help="compile each block in place, as train.compile=true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s of the device for MFU")
    ap.add_argument("--json", default=None)
    return ap.parse_args(argv)


def run(args) -> dict:
    device = pick_device(args.device, what="--device")
    overrides = list(args.overrides)
    if args.preset or not args.recipe:
        overrides.append(f"model.preset={args.preset or 'elf-tiny'}")
    cfg = load_config(args.recipe, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, args.latent_dim, args.vocab).to(device)
    model.train()
    opt = Optimizers(cfg.optim, [model], lr=1e-4, total_steps=args.warmup + args.steps)
    ema = EMA(model, cfg.optim.ema_decay)
    objective = ElfObjective.from_config(cfg)  # the one place the loss is built from a recipe
    guided = objective.use_sc_cfg and cfg.objective.self_cond_prob > 0
    tf32 = tf32_on(device)
    if args.compile:
        compile_blocks(model)
    B, L, C = args.batch, args.length, args.latent_dim
    x = torch.randn(B, L, C, device=device) * 0.5
    ids = torch.randint(0, args.vocab, (B, L), device=device)
    am = torch.ones(B, L, dtype=torch.bool, device=device)
    cm = torch.zeros(B, L, dtype=torch.bool, device=device)
    bf16 = cfg.train.bf16 and device.type == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> tuple[int, int]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            d = objective.draw(x)
            out = objective(model, x, ids, am, cm, draws=d)
            out.loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad()
        ema.update(model, count=1)
        dec, sc = d.decode_rows.cpu(), d.sc_rows.cpu()  # drawn on the host: no sync
        return int(dec.sum()), int((sc & ~dec).sum())

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    flops = 0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        dec_rows, helper_rows = step()
        flops += step_flops(model, B, L, decode_rows=dec_rows, helper_rows=helper_rows,
                            helper_passes=2 if guided else 1).total
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0

    n = count_parameters(model)
    tokens = B * L * args.steps
    peak_mem = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    res = {"device": name, "recipe": args.recipe or "defaults", "preset": cfg.model.preset,
           "params_M": round(n / 1e6, 2), "batch": B, "length": L, "latent_dim": C, "vocab": args.vocab,
           "precision": ("bf16-autocast" if bf16 else "fp32") + ("+tf32" if tf32 else ""),
           "compile": bool(args.compile), "step_s": round(dt / args.steps, 4), "tokens_per_s": round(tokens / dt, 1),
           "tflops_per_s": round(flops / dt / 1e12, 2), "peak_mem_GiB": round(peak_mem, 3), "torch": torch.__version__}
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    if peak:
        res["peak_tflops"] = peak
        res["mfu_pct"] = round(100 * flops / dt / (peak * 1e12), 1)
        res["mfu_naive_pct"] = round(100 * naive_step_flops(n, B, L) * args.steps / dt / (peak * 1e12), 1)
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        res = run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("| " + " | ".join(res) + " |")
    print("|" + "---|" * len(res))
    print("| " + " | ".join(str(v) for v in res.values()) + " |")
    if args.json:
        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

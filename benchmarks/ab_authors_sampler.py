"""A/B: elfctl's sampler against the authors' PyTorch sampler, same weights, interleaved in one process.

The authors' code is fetched for this measurement only and never vendored: check out their ``pytorch_elf`` branch
(github.com/lillian039/ELF) anywhere, ``pip install einops``, and point ``--authors-src`` at its ``src/`` folder:

    git clone -b pytorch_elf https://github.com/lillian039/ELF /tmp/elf-authors
    python benchmarks/ab_authors_sampler.py --authors-src /tmp/elf-authors/src --sampler sde
    python benchmarks/ab_authors_sampler.py --authors-src /tmp/elf-authors/src --sampler ode --compile

Both networks get the same random weights (the authors' init, normal std 0.02, copied through elfctl's key map),
so the only difference is the code around the matmuls. One JSON line: the median seconds of each, their ratio
(elfctl / authors; below 1 means elfctl is faster), the forward outputs' largest difference, and the fraction of
this machine's fp32 GEMM rate (2048³ matmuls on the same threads, measured in the same run) that each sampler
reaches on the workload's FLOPs (counted with ``torch.utils.flop_counter`` over one elfctl draw). ``--compile`` times
elfctl with ``torch.compile`` (``sample.compile``; compile time excluded). Quote ratios only from a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-src", required=True, help="the src/ folder of the authors' pytorch_elf branch")
    ap.add_argument("--sampler", choices=("sde", "ode"), default="sde")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="time elfctl's network under torch.compile")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs "
                                                          "(inductor's own CPU GEMM templates)")
    ap.add_argument("--freezing", action="store_true", help="with --compile: inductor freezing (weights folded as "
                                                            "constants and prepacked for the CPU GEMM; inference)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.authors_src)
    from configs.config import Config as AuthorsConfig, SamplingConfig  # the authors' modules
    from modules.model import ELF as AuthorsELF
    from utils.generation_utils import _dlm_decode_batch, _generate_samples_single_batch
    from utils.sampling_utils import get_sampling_steps

    from bench_sampling import gemm_rate  # this folder (on sys.path as the script's own)
    from elfctl.cpu_allocator import keep_freed_memory
    from elfctl.flow import FlowPath
    from elfctl.model import AUTHORS_KEY_MAP, AUTHORS_TRANSPOSED, ELF
    from elfctl.sampling.sampler import EulerSampler, SamplerSettings

    keep_freed_memory()  # as `elfctl sample` does on the CPU (process-wide: the authors' runs get it too)
    C, V, H, D, NH = 384, 30522, 256, 6, 4  # MiniLM latents and vocabulary; the A/B network
    torch.manual_seed(0)
    theirs = AuthorsELF(text_encoder_dim=C, max_length=args.length, hidden_size=H, depth=D, num_heads=NH,
                        num_model_mode_tokens=4, vocab_size=V).eval()
    for p in theirs.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    ours = ELF(C, V, depth=D, hidden_size=H, num_heads=NH).eval()
    to_ours = {name.split(" ")[0]: mine for mine, name in AUTHORS_KEY_MAP.items()}
    state = {}
    for key, value in theirs.state_dict().items():
        key = key.replace("_orig_mod.", "")
        mine = to_ours.get(key, key)  # block parameters have the same names on both sides
        state[mine] = value.t().contiguous() if mine in AUTHORS_TRANSPOSED else value
    ours.load_state_dict(state, strict=True)

    z = torch.randn(4, args.length, C)
    t, w = torch.rand(4), torch.full((4,), 3.0)
    with torch.no_grad():
        mine_out, _ = ours(z, t, x_sc=torch.zeros_like(z), sc_cfg=w)
        their_out = theirs(torch.cat([z, torch.zeros_like(z)], -1), t, self_cond_cfg_scale=w)
    their_out = their_out[0] if isinstance(their_out, tuple) else their_out
    parity = float((their_out - mine_out).abs().max())

    gamma = 1.5 if args.sampler == "sde" else 0.0
    cfg = AuthorsConfig()
    cfg.max_length, cfg.denoiser_p_mean = args.length, -1.5
    sampling = SamplingConfig(sampling_method=args.sampler, num_sampling_steps=[args.steps], sde_gamma=gamma,
                              time_schedule="logit_normal")
    gen = torch.Generator().manual_seed(0)

    def run_authors() -> None:
        grid = get_sampling_steps(args.steps, "logit_normal", P_mean=-1.5, P_std=0.8)
        z0 = torch.randn(args.batch, args.length, C, generator=gen) * cfg.denoiser_noise_scale
        with torch.no_grad():
            lat = _generate_samples_single_batch(model=theirs, generator=gen, z=z0, t_steps=grid, cond_seq=None,
                                                 cond_seq_mask=None, config=cfg, sampling_config=sampling,
                                                 cfg_scale=1.0, self_cond_cfg_scale=3.0)
            _dlm_decode_batch(z=lat, model=theirs, t_final_val=1.0, config=cfg, self_cond_cfg_scale=3.0)

    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    net = torch.compile(ours, mode=args.compile_mode) if args.compile else ours
    elf = EulerSampler(net, FlowPath(), SamplerSettings(steps=args.steps, sampler=args.sampler, gamma=gamma,
                                                        sc_cfg=3.0))
    seed = [0]

    def run_elfctl() -> None:
        seed[0] += 1
        elf.sample(args.batch, args.length, C, seed=seed[0], device=torch.device("cpu"))

    run_authors()
    run_elfctl()  # warm-up (and compilation)
    # the texts a user gets: the same token ids as the eager network's, or not (compiled kernels reorder sums)
    eager = EulerSampler(ours, FlowPath(), elf.s)
    same_ids = all(torch.equal(eager.sample(args.batch, args.length, C, seed=s, device=torch.device("cpu")).ids,
                               elf.sample(args.batch, args.length, C, seed=s, device=torch.device("cpu")).ids)
                   for s in (101, 102))
    with FlopCounterMode(display=False) as counter:
        run_elfctl()
    gflop = counter.get_total_flops() / 1e9
    times: dict[str, list[float]] = {"authors": [], "elfctl": []}
    for _ in range(args.repeats):
        for name, fn in (("authors", run_authors), ("elfctl", run_elfctl)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rate = gemm_rate(torch.device("cpu"))
    a, e = statistics.median(times["authors"]), statistics.median(times["elfctl"])
    print(json.dumps({"sampler": f"{args.sampler} {args.steps}", "batch": args.batch, "length": args.length,
                      "params": sum(p.numel() for p in ours.parameters()), "compile": args.compile,
                      "compile_mode": args.compile_mode, "freezing": args.freezing, "ids_equal_to_eager": same_ids,
                      "threads": args.threads, "authors_s": round(a, 3), "elfctl_s": round(e, 3),
                      "ratio_elfctl_over_authors": round(e / a, 3), "gflop": round(gflop, 1),
                      "gemm_gflop_per_s": round(rate, 1), "elfctl_gemm_fraction": round(gflop / e / rate, 3),
                      "authors_gemm_fraction": round(gflop / a / rate, 3), "forward_parity_max_abs": parity}))


if __name__ == "__main__":
    main()

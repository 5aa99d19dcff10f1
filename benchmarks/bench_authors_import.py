"""Time `elfctl import` of a released-size checkpoint written in the authors' layout (random weights).

usage: python benchmarks/bench_authors_import.py [--preset elf-b] [--workdir DIR] [--keep]

Writes ``DIR/authors/checkpoint_<step>`` exactly as the authors' ``save_checkpoint`` would for a network of the
preset's shape with t5-small's widths (latent 512, vocabulary 32,100): ``params`` and ``ema_params1`` under
``_orig_mod.`` names with (in, out) decode kernels, an ``opt_state`` of their Muon + Adam moments (one momentum
per 2-D tensor, two Adam moments per other tensor), ``lr_scheduler``, ``step``, ``epoch``, ``dropout_rng``,
``grad_accum_buffers``. Then times ``import_checkpoint`` into ``DIR/run`` (read with weights_only + mmap, shape
inference and key checks, sha256 of the file, safetensors written) and prints one JSON line. The run directory is
kept with --keep, e.g. to time sampling next:

    elfctl sample --run DIR/run --num-samples 4 --batch-size 4 --out DIR/samples.jsonl
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def write_authors_checkpoint(path: Path, preset: str, step: int = 95000) -> int:
    import torch

    from elfctl.authors.keys import to_authors
    from elfctl.model import ELF, PRESETS

    shape = PRESETS[preset]
    torch.manual_seed(0)
    model = ELF(512, 32100, depth=shape.depth, hidden_size=shape.hidden_size, num_heads=shape.num_heads)
    params = {f"_orig_mod.{k}": v for k, v in to_authors(model.state_dict()).items()}
    ema = {k: v.clone() for k, v in params.items()}
    tensors = list(params.values())
    state = {}
    for i, t in enumerate(tensors):  # their optimizer's moments: Muon momentum (2-D), Adam exp_avg/exp_avg_sq
        state[i] = ({"momentum_buffer": torch.zeros_like(t), "step": step} if t.dim() == 2 else
                    {"exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t), "step": step})
    payload = {"params": params, "ema_params1": ema, "opt_state": {"state": state, "param_groups": []},
               "lr_scheduler": {"last_epoch": step}, "step": step, "epoch": 5,
               "dropout_rng": torch.Generator().manual_seed(0).get_state(), "grad_accum_buffers": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return sum(t.numel() for t in tensors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="elf-b", choices=("elf-tiny", "elf-small", "elf-b", "elf-m", "elf-l"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/elfctl-bench-import"))
    ap.add_argument("--keep", action="store_true", help="keep the imported run directory")
    args = ap.parse_args()

    from elfctl.authors.importer import import_checkpoint

    src = args.workdir / "authors" / "checkpoint_95000"
    run = args.workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    t = time.perf_counter()
    n = write_authors_checkpoint(src, args.preset)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    res = import_checkpoint(str(src), run, note=lambda m: print(m, file=sys.stderr))
    import_s = time.perf_counter() - t
    print(json.dumps({"preset": args.preset, "parameters": n, "file_bytes": src.stat().st_size,
                      "write_s": round(write_s, 2), "import_s": round(import_s, 2), "run_dir": str(res.run_dir),
                      "arch": res.arch.summary()}))
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

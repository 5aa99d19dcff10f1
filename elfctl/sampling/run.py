"""A sampling job: resolve settings against the run's recipe, draw batches, write the samples JSONL.

Output format (read by ``elfctl eval``): a header line
``{"type": "header", "checkpoint", "step", "run_dir", "recipe", "task", "sampler": {...}, "guidance": {...},
"seed", "nfe", "rows_per_batch", "wall_time_s", "ema", "device", "kernels_backend", "num_samples"}`` then one line
per sample ``{"type": "sample", "index", "text", "token_ids", "input"?, "reference"?, "prefix"?, "suffix"?,
"trajectory"?}``. Each batch b is seeded by (seed, b), so a sample does not depend on the batches before it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from elfctl.errors import ConfigError
from elfctl.flow import FlowPath
from elfctl.sampling.sampler import EulerSampler, SamplerSettings, mix_seed


@dataclass
class SampleRequest:
    ref: Optional[Path] = None
    runs_dir: Path = Path("runs")
    steps: Optional[int] = None
    sampler: Optional[str] = None
    gamma: Optional[float] = None
    sc_cfg: Optional[float] = None
    cfg: Optional[float] = None
    time_grid: Optional[str] = None
    num_samples: Optional[int] = None
    batch_size: Optional[int] = None
    seeds: list[int] = field(default_factory=list)
    out: Optional[Path] = None
    input_file: Optional[Path] = None
    prompt: Optional[str] = None
    prefix: Optional[str] = None
    suffix: Optional[str] = None
    infill_length: Optional[int] = None
    trajectory: list[int] = field(default_factory=list)
    ema: Optional[bool] = None          # None: the recipe's sample.ema
    trust_pickle: bool = False
    truncate: bool = False
    device: str = "auto"


def validate(req: SampleRequest) -> None:
    """Reject bad flags before anything loads (exit 2, one line each)."""
    if req.steps is not None and req.steps < 1:
        raise ConfigError(f"--steps: {req.steps} is out of range; must be >= 1")
    if req.sampler is not None and req.sampler not in ("ode", "sde"):
        raise ConfigError(f"--sampler: {req.sampler!r} is not valid; choose ode or sde")
    if req.time_grid is not None and req.time_grid not in ("uniform", "logit_normal"):
        raise ConfigError(f"--time-grid: {req.time_grid!r} is not valid; choose uniform or logit_normal")
    for name, v in (("--gamma", req.gamma), ("--cfg", req.cfg), ("--sc-cfg", req.sc_cfg)):
        if v is not None and v < 0:
            raise ConfigError(f"{name}: {v} is out of range; must be >= 0")
    for name, v in (("--num-samples", req.num_samples), ("--batch-size", req.batch_size)):
        if v is not None and v < 1:
            raise ConfigError(f"{name}: {v} is out of range; must be >= 1")


def resolve_settings(req: SampleRequest, cfg) -> tuple[SamplerSettings, dict]:
    """Flags over the recipe's ``sample.*``; returns the settings and the guidance record of the header."""
    s = cfg.sample
    conditional = cfg.data.task == "conditional"
    sc_cfg = s.sc_cfg if req.sc_cfg is None else req.sc_cfg
    cfg_scale = s.cfg if req.cfg is None else req.cfg
    applies_to = "condition" if conditional else "self-conditioning"
    if not conditional and req.cfg is not None:
        # An unconditional model's only condition is its own self-conditioning: --cfg is the SC-CFG scale.
        if req.sc_cfg is not None and req.sc_cfg != req.cfg:
            raise ConfigError(f"--cfg {req.cfg} and --sc-cfg {req.sc_cfg} set the same guidance of this "
                              f"unconditional model (its self-conditioning) to different values; give one")
        sc_cfg, cfg_scale = req.cfg, 1.0
    settings = SamplerSettings(
        steps=s.steps if req.steps is None else req.steps, sampler=s.sampler if req.sampler is None else req.sampler,
        gamma=s.gamma if req.gamma is None else req.gamma, time_grid=s.time_grid if req.time_grid is None
        else req.time_grid, cfg=cfg_scale, sc_cfg=sc_cfg, noise_scale=cfg.objective.noise_scale,
        t_eps=cfg.objective.t_eps, p_mean=cfg.objective.p_mean, p_std=cfg.objective.p_std)
    guidance = {"cfg": cfg_scale, "sc_cfg": sc_cfg, "cfg_applies_to": applies_to,
                "cfg_flag_set": "sc_cfg" if (not conditional and req.cfg is not None) else
                ("cfg" if req.cfg is not None else None)}
    return settings, guidance


def _read_inputs(path: Path) -> list[dict]:
    from elfctl.data.text_sources import read_jsonl

    rows = read_jsonl(path, ("input",))
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r, full in zip(rows, raw):
        if isinstance(full.get("output"), str):
            r["reference"] = full["output"]
    return rows


def run_sampling(req: SampleRequest, log: Callable[[str], None] = print,
                 warn: Optional[Callable[[str], None]] = None) -> Iterator[tuple[Path, dict]]:
    """Yield (output path, header) per seed; every flag left None takes the recipe's ``sample.*`` value."""
    from elfctl import kernels
    from elfctl.data.tokenize import decode_ids
    from elfctl.sampling.conditioning import infill_condition, infill_text_ids, prompt_condition
    from elfctl.sampling.loading import load_for_sampling
    from elfctl.train.distributed import pick_device

    validate(req)
    if req.ref is not None and not Path(req.ref).exists():
        raise ConfigError(f"run or checkpoint not found: {req.ref} (looked at {Path(req.ref).resolve()})")
    warn = warn or log
    device = pick_device(req.device)
    loaded = load_for_sampling(req.ref, runs_root=req.runs_dir, ema=req.ema, device=device,
                               trust_pickle=req.trust_pickle)
    ema = loaded.ema
    cfg, model, tok = loaded.cfg, loaded.model, loaded.tokenizer
    settings, guidance = resolve_settings(req, cfg)
    bad = [k for k in req.trajectory if not 0 <= k < settings.steps]
    if bad:
        raise ConfigError(f"--trajectory: step {bad[0]} is out of range; steps are 0..{settings.steps - 1}")
    conditional = cfg.data.task == "conditional"
    if conditional and (req.prefix or req.suffix):
        raise ConfigError("--prefix/--suffix infill unconditional models; this model is conditional: use --prompt "
                          "or --input")
    if not conditional and (req.prompt or req.input_file):
        raise ConfigError("--prompt/--input condition a conditional model; this model is unconditional (try "
                          "--prefix/--suffix to pin text)")
    inputs: list[dict] = []
    if conditional:
        if req.prompt:
            inputs = [{"input": req.prompt}]
        elif req.input_file:
            inputs = _read_inputs(req.input_file)
        else:  # held-out examples of the run's own data
            from elfctl.data.dataset import reference_texts

            n = req.num_samples or cfg.sample.num_samples
            inputs = [{"input": r["input"], "reference": r["output"]} for r in reference_texts(cfg, n=n)]
            log(f"no --prompt/--input: conditioning on {len(inputs)} held-out inputs of {cfg.data.dataset}")
    num = req.num_samples or (len(inputs) if inputs else cfg.sample.num_samples)
    if inputs and req.prompt:
        inputs = inputs * num
    num = min(num, len(inputs)) if inputs else num
    bs = req.batch_size or cfg.sample.batch_size
    L = cfg.data.max_length
    path = FlowPath(cfg.objective.noise_scale, cfg.objective.t_eps, cfg.model.prediction)
    backend = kernels.resolve_backend(torch.empty(0, device=device))
    run_dir = loaded.checkpoint.parent.parent if loaded.checkpoint.is_dir() else loaded.checkpoint.parent

    for seed in req.seeds or [cfg.sample.seed]:
        sampler = EulerSampler(model, path, settings)
        records, t0, nfe, rows, traj_passes = [], time.perf_counter(), 0, 0, 0
        progress = _Progress(num, tty=sys.stdout.isatty(), label=f"seed {seed}")
        for b, start in enumerate(range(0, num, bs)):
            n = min(bs, num - start)
            cond, layout, batch_inputs = None, None, inputs[start:start + n]
            if conditional:
                cond = prompt_condition([r["input"] for r in batch_inputs], tok, loaded.encoder, cfg.data, device,
                                        truncate=req.truncate, warn=lambda m: warn(f"warning: {m}"))
            elif req.prefix or req.suffix:
                cond, layout = infill_condition(req.prefix or "", req.suffix or "", n, tok, loaded.encoder, cfg.data,
                                                device, req.infill_length)
            # each batch has its own stream from (seed, b): a sample does not depend on the batches before it
            res = sampler.sample(n, L, model.latent_dim, seed=mix_seed(seed, b), device=device, cond=cond,
                                 trajectory_steps=req.trajectory)
            nfe, rows, traj_passes = res.nfe, max(rows, res.rows), res.trajectory_passes
            for j in range(n):
                ids = res.token_ids[j].tolist()
                rec = {"type": "sample", "index": start + j}
                if conditional:
                    n_cond = int(cond.mask[j].sum())
                    rec["text"] = decode_ids(tok, ids[n_cond:])
                    rec["input"] = batch_inputs[j]["input"]
                    if "reference" in batch_inputs[j]:
                        rec["reference"] = batch_inputs[j]["reference"]
                    ids = ids[n_cond:]
                elif layout is not None:
                    mid, full = infill_text_ids(ids, layout, _eos(tok))
                    rec["middle"] = decode_ids(tok, mid)
                    rec["text"] = decode_ids(tok, full)
                    rec["prefix"], rec["suffix"] = req.prefix or "", req.suffix or ""
                else:
                    rec["text"] = decode_ids(tok, ids)
                rec["token_ids"] = ids
                if res.trajectory:
                    rec["trajectory"] = [{"step": k, "text": decode_ids(tok, t[j].tolist())} for k, t in res.trajectory]
                records.append(rec)
            progress.update(start + n, log)
        progress.close()
        wall = time.perf_counter() - t0
        header = {"type": "header", "checkpoint": str(loaded.checkpoint), "step": loaded.meta.get("step"),
                  "run_dir": str(run_dir), "recipe": cfg.name, "task": cfg.data.task,
                  "sampler": {k: v for k, v in asdict(settings).items()
                              if k in ("steps", "sampler", "gamma", "time_grid", "cfg", "sc_cfg")},
                  "guidance": guidance, "seed": seed, "nfe": nfe + traj_passes,
                  "nfe_breakdown": {"denoise": nfe - 1, "decode": 1, "trajectory": traj_passes,
                                    "rows_per_denoise": 2 if (settings.cfg != 1.0 and conditional) else 1},
                  "rows_per_batch": rows, "wall_time_s": wall, "ema": ema, "device": str(device),
                  "kernels_backend": backend, "num_samples": len(records),
                  "tokenizer": cfg.encoder.tokenizer or cfg.encoder.source}
        out = req.out
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = run_dir / "samples" / f"{settings.sampler}-{settings.steps}-s{seed}-{stamp}.jsonl"
        elif len(req.seeds) > 1:
            out = out.with_name(f"{out.stem}-s{seed}{out.suffix}")
        write_jsonl_atomic(Path(out), [header, *records])
        yield Path(out), header


def _eos(tok) -> int:
    from elfctl.data.tokenize import eos_id

    return eos_id(tok)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Progress:
    """A rich bar over batches on a terminal; otherwise one plain line per batch (logs, CI, pipes)."""

    def __init__(self, total: int, tty: bool, label: str = "sample"):
        self.total, self.label, self.bar, self.t0 = total, label, None, time.perf_counter()
        if tty:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                TimeElapsedColumn(), TimeRemainingColumn())
            self.task = self.bar.add_task(label, total=total, rate="")
            self.bar.start()

    def update(self, done: int, log) -> None:
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{rate:.2f} samples/s")
        else:
            log(f"{self.label}: {done}/{self.total} samples ({rate:.2f} samples/s)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()

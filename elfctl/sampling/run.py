"""A sampling job: resolve settings against the run's recipe, draw batches, write the samples JSONL.

The Python entry other commands use (``elfctl ablate`` calls it in-process)::

    for path, header in run_sampling(SampleRequest(ref=run_dir, settings={"steps": 32, "gamma": 1.5},
                                                   seeds=[0], out=path), log=print):
        ...

``settings`` are ``sample.*`` overrides keyed by :func:`elfctl.sampling.settings.sample_keys`, validated exactly as
recipe keys are.

Output format (read by ``elfctl eval``): a header line
``{"type": "header", "checkpoint", "step", "run_dir", "recipe", "task", "family", "sampler": {...}, "guidance": {...},
"seed", "nfe", "rows_per_batch", "wall_time_s", "ema", "device", "precision", "compile", "kernels_backend",
"num_samples"}`` then one line per sample ``{"type": "sample", "index", "text", "token_ids", "input"?, "reference"?,
"prefix"?, "suffix"?, "trajectory"?}`` (``trajectory``: one frame ``{"step", "text", "tokens", "pinned"?}`` per
recorded step, :mod:`elfctl.sampling.trajectory`). Each batch b is seeded by (seed, b), so a sample does not depend on the
batches before it.

While a seed is drawn, finished batches are appended to ``<out>.partial`` (its header says ``"partial": true``); the
complete file replaces it atomically at the end. An interrupted or failed job keeps the partial file and says so.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from elfctl.atomic import atomic_write_jsonl, check_can_create_in
from elfctl.config import SampleConfig
from elfctl.errors import ConfigError
from elfctl.sampling import settings as sample_settings
from elfctl.sampling.trajectory import TrajectorySpec, trajectory_steps

Log = Callable[[str], None]


@dataclass
class SampleRequest:
    ref: Optional[Path] = None                      # run dir, checkpoint dir or file; None: the newest run
    settings: dict[str, Any] = field(default_factory=dict)  # sample.* overrides keyed by SampleConfig field names
    seeds: list[int] = field(default_factory=list)  # one output file per seed; empty: sample.seed
    out: Optional[str | Path] = None                # a file, or a directory (existing or ending in '/')
    runs_dir: Path = Path("runs")
    input_file: Optional[Path] = None
    prompt: Optional[str] = None
    prefix: Optional[str] = None
    suffix: Optional[str] = None
    infill_length: Optional[int] = None
    trajectory: TrajectorySpec = field(default_factory=list)  # step indices, or "all"
    trust_pickle: bool = False
    truncate: bool = False
    device: str = "auto"
    flag_names: bool = False                        # messages name settings by flag (--gamma), not key (sample.gamma)


@dataclass
class _Job:
    """Everything resolved before the first draw."""

    req: SampleRequest
    loaded: Any
    sample: SampleConfig
    guidance: dict
    sampler: Any
    device: torch.device
    inputs: list[dict]
    num: int
    outputs: dict[int, Path]
    run_dir: Path
    backend: str
    warn: Log
    trajectory: list[int] = field(default_factory=list)  # the step indices decoded for the trajectory

    @property
    def conditional(self) -> bool:
        return self.loaded.cfg.data.task == "conditional"


def run_sampling(req: SampleRequest, log: Log = print, warn: Optional[Log] = None) -> Iterator[tuple[Path, dict]]:
    """Yield (output path, header) per seed; settings not overridden take the recipe's ``sample.*`` value."""
    warn = warn or (lambda m: log(f"warning: {m}"))
    overrides = check_request(req)
    device = _pick_device(req.device)
    loaded = _load(req, overrides, device)
    job = _plan(req, loaded, overrides, device, log, warn)
    for seed, out in job.outputs.items():
        yield _draw_seed(job, seed, out, log)


# ------------------------------------------------------------------------------------------------ before loading
def check_request(req: SampleRequest) -> dict[str, Any]:
    """Everything that can be checked before a model loads (exit 2, one line); returns the checked overrides."""
    overrides = sample_settings.check_overrides(req.settings, flags=req.flag_names)
    seed_name = sample_settings.label("seed", req.flag_names)
    if "seed" in overrides and req.seeds:
        raise ConfigError(f"{seed_name} and --seeds both given; give one (--seeds for one file per seed)")
    dup = sorted({s for s in req.seeds if req.seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"--seeds: {', '.join(map(str, dup))} given more than once; each seed makes one file")
    if req.infill_length is not None and not (req.prefix or req.suffix):
        raise ConfigError("--infill-length: sets the generated length between --prefix and --suffix; give one of "
                          "them, or drop --infill-length")
    if (req.prefix or req.suffix) and (req.prompt or req.input_file):
        raise ConfigError("--prefix/--suffix (infilling) and --prompt/--input (conditioning) do not combine")
    if req.prompt and req.input_file:
        raise ConfigError("give either --prompt or --input, not both")
    if req.input_file is not None and not Path(req.input_file).is_file():
        raise ConfigError(f"--input: file not found: {req.input_file}")
    if req.ref is not None and not Path(req.ref).exists() and not _hub_id(req.ref):
        raise ConfigError(f"run or checkpoint not found: {req.ref} (looked at {Path(req.ref).resolve()})")
    check_out(req.out)
    return overrides


def _hub_id(ref) -> bool:
    """An authors' hub repo id (org/name[/sub]): load_for_sampling imports it into the cache."""
    from elfctl.authors.source import looks_like_hub_id

    return looks_like_hub_id(str(ref))


def _out_is_dir(out: str | Path) -> bool:
    return str(out).endswith(("/", os.sep)) or Path(out).is_dir()


def check_out(out: Optional[str | Path]) -> None:
    """``--out`` can be written: its nearest existing folder is a writable directory, and it is not a folder's name
    used as a file. (A directory, or a path ending in '/', means the default file name inside it.)"""
    if out is None:
        return
    path = Path(out)
    if not _out_is_dir(out) and path.exists() and not path.is_file():
        raise ConfigError(f"--out: {path} exists and is not a regular file")
    check_can_create_in(path if _out_is_dir(out) else path.parent, path, "--out")


def _pick_device(spec: str) -> torch.device:
    from elfctl.rundir.device import pick_device

    return pick_device(spec, what="--device")


def _load(req: SampleRequest, overrides: dict, device: torch.device):
    from elfctl.sampling.loading import load_for_sampling

    return load_for_sampling(req.ref, runs_root=req.runs_dir, ema=overrides.get("ema"), device=device,
                             trust_pickle=req.trust_pickle)


# ------------------------------------------------------------------------------------------------ planning
def _plan(req: SampleRequest, loaded, overrides: dict, device: torch.device, log: Log, warn: Log) -> _Job:
    from elfctl.kernels import ops as kernels

    from elfctl.sampling.student import is_student, step_settings

    cfg = loaded.cfg
    conditional = cfg.data.task == "conditional"
    run_dir = loaded.checkpoint.parent.parent if loaded.checkpoint.is_dir() else loaded.checkpoint.parent
    if "steps" in overrides and is_student(run_dir):  # the student's table row for that step count
        overrides = {**step_settings(cfg.distill.samplers, overrides["steps"], overrides), **overrides}
    sample, guidance = sample_settings.resolve(cfg.sample, overrides, conditional=conditional,
                                               flags=req.flag_names, family=cfg.model.family)
    traj = trajectory_steps(req.trajectory, sample.steps)
    _check_task_flags(req, conditional, cfg.model.family)
    inputs, num = _inputs(req, loaded, sample, "num_samples" in overrides, log, warn)
    seeds = req.seeds or [sample.seed]
    outputs = {s: output_path(req.out, run_dir, sample, s, many=len(seeds) > 1) for s in seeds}
    return _Job(req, loaded, sample, guidance, _build_sampler(loaded, sample, device), device, inputs, num, outputs,
                run_dir, kernels.resolve_backend(torch.empty(0, device=device)), warn, traj)


def _check_task_flags(req: SampleRequest, conditional: bool, family: str) -> None:
    from elfctl.family import family_entry

    if (req.prefix or req.suffix) and family_entry(family).data != "latents":
        raise ConfigError(f"--prefix/--suffix: infilling pins encoder latents; a model.family {family} model has "
                          f"none (sample it without --prefix/--suffix)")
    if conditional and (req.prefix or req.suffix):
        raise ConfigError("--prefix/--suffix infill unconditional models; this model is conditional: use --prompt "
                          "or --input")
    if not conditional and (req.prompt or req.input_file):
        raise ConfigError("--prompt/--input condition a conditional model; this model is unconditional (try "
                          "--prefix/--suffix to pin text)")


def _build_sampler(loaded, sample: SampleConfig, device: torch.device):
    """The family's sampler named by ``sample.sampler`` (elfctl.family)."""
    from elfctl.family import load_family
    from elfctl.sampling.precision import apply_precision

    apply_precision(device, sample.bf16)  # the one policy (elfctl.precision), as training applies it
    if device.type == "cpu":  # every step frees and re-allocates the same buffers: keep them in the heap
        from elfctl.cpu_allocator import keep_freed_memory

        keep_freed_memory()
    model = torch.compile(loaded.model) if sample.compile else loaded.model
    return load_family(loaded.cfg.model.family).sampler(loaded, sample, model)


def _inputs(req: SampleRequest, loaded, sample: SampleConfig, num_given: bool, log: Log,
            warn: Log) -> tuple[list[dict], int]:
    """The conditions of a conditional model (one per sample) and the number of samples."""
    cfg = loaded.cfg
    if cfg.data.task != "conditional":
        return [], sample.num_samples
    if req.prompt:  # one sample of the prompt unless a number is asked for
        n = sample.num_samples if num_given else 1
        return [{"input": req.prompt}] * n, n
    if req.input_file:
        inputs, what = read_inputs(Path(req.input_file)), f"--input {req.input_file}"
    else:
        inputs, what = _held_out_inputs(loaded, sample.num_samples, log), "the held-out split"
        num_given = True
    if num_given and sample.num_samples != len(inputs):
        warn(f"{sample.num_samples} samples asked for, but {what} has {len(inputs)} inputs: drawing "
             f"{min(sample.num_samples, len(inputs))}, one per input")
    elif len(inputs) < sample.num_samples:  # fewer than the recipe's number: say why the file is short
        log(f"{what} has {len(inputs)} inputs: drawing {len(inputs)}, one per input (the recipe's "
            f"sample.num_samples, {sample.num_samples}, applies to the held-out inputs only)")
    return inputs, min(sample.num_samples, len(inputs)) if num_given else len(inputs)


def _held_out_inputs(loaded, n: int, log: Log) -> list[dict]:
    """The first n held-out examples; conditions longer than the model's room are cut exactly as training cut them."""
    from elfctl.data.dataset import reference_texts
    from elfctl.data.tokenize import token_ids
    from elfctl.data.tokenize import condition_room

    cfg = loaded.cfg
    inputs = [{"input": r["input"], "reference": r["output"], "truncate": True} for r in reference_texts(cfg, n=n)]
    room = condition_room(cfg.data)
    cut = sum(len(token_ids(loaded.tokenizer, r["input"])) > room for r in inputs)
    log(f"no --prompt/--input: conditioning on {len(inputs)} held-out inputs of {cfg.data.dataset}"
        + (f" ({cut} cut to {room} tokens, as in training)" if cut else ""))
    return inputs


def read_inputs(path: Path) -> list[dict]:
    from elfctl.data.text_sources import read_jsonl

    rows = read_jsonl(path, ("input",))
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r, full in zip(rows, raw):
        if isinstance(full.get("output"), str):
            r["reference"] = full["output"]
    return rows


def output_path(out: Optional[str | Path], run_dir: Path, sample: SampleConfig, seed: int, *, many: bool) -> Path:
    """Where a seed's samples go: ``out`` (``-s<seed>`` added when several seeds share it), or the default name
    ``<sampler>-<steps>-s<seed>-<time>.jsonl`` in ``out`` when it is a directory, else in ``<run>/samples``."""
    if out is None or _out_is_dir(out):
        folder = run_dir / "samples" if out is None else Path(out)
        return folder / f"{sample.sampler}-{sample.steps}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    out = Path(out)
    return out.with_name(f"{out.stem}-s{seed}{out.suffix}") if many else out


# ------------------------------------------------------------------------------------------------ drawing
def _draw_seed(job: _Job, seed: int, out: Path, log: Log) -> tuple[Path, dict]:
    """Draw every batch of one seed, appending finished batches to ``<out>.partial``; then write ``out``."""
    from elfctl.sampling.sampler import mix_seed

    bs, records, stats = job.sample.batch_size, [], {"nfe": 0, "rows": 0, "traj": 0}
    header = _header(job, seed)
    partial = PartialFile(out, header)
    progress = _Progress(job.num, tty=sys.stdout.isatty(), label=f"seed {seed}")
    t0 = time.perf_counter()
    try:
        for b, start in enumerate(range(0, job.num, bs)):
            n = min(bs, job.num - start)
            batch_inputs = job.inputs[start:start + n]
            cond, layout = _condition(job, n, batch_inputs)
            # each batch has its own stream from (seed, b): a sample does not depend on the batches before it
            res = job.sampler.sample(n, job.loaded.cfg.data.max_length, job.loaded.model.latent_dim,
                                     seed=mix_seed(seed, b), device=job.device, cond=cond,
                                     trajectory_steps=job.trajectory)
            stats.update(nfe=res.nfe, rows=max(stats["rows"], res.rows), traj=res.trajectory_passes,
                         breakdown=getattr(res, "nfe_breakdown", None))
            batch = _records(job, res, start, batch_inputs, cond, layout)
            partial.append(batch)
            records += batch
            progress.update(start + n, log)
    except BaseException:
        progress.close()
        partial.keep_or_drop(log)
        raise
    progress.close()
    header = _header(job, seed, stats=stats, wall=time.perf_counter() - t0, num=len(records))
    atomic_write_jsonl(out, [header, *records])
    partial.drop()
    return out, header


def _condition(job: _Job, n: int, batch_inputs: list[dict]):
    """(Condition or None, infill layout or None) of one batch."""
    from elfctl.sampling.conditioning import infill_condition, prompt_condition

    req, loaded = job.req, job.loaded
    if job.conditional:
        cut = req.truncate or any(r.get("truncate") for r in batch_inputs)
        cond = prompt_condition([r["input"] for r in batch_inputs], loaded.tokenizer, loaded.encoder,
                                loaded.cfg.data, job.device, truncate=cut,
                                warn=job.warn if req.truncate else (lambda m: None))  # held-out: said once
        return cond, None
    if req.prefix or req.suffix:
        return infill_condition(req.prefix or "", req.suffix or "", n, loaded.tokenizer, loaded.encoder,
                                loaded.cfg.data, job.device, req.infill_length)
    return None, None


def _records(job: _Job, res, start: int, batch_inputs: list[dict], cond, layout) -> list[dict]:
    """One JSON record per row; ids, masks and trajectories cross to the CPU once per batch, not per row."""
    from elfctl.data.tokenize import decode_ids, eos_id
    from elfctl.sampling.conditioning import infill_text_ids

    tok, req = job.loaded.tokenizer, job.req
    all_ids = res.token_ids.cpu().tolist()
    n_cond = cond.mask.sum(dim=1).cpu().tolist() if job.conditional else None
    keep = output_length(job.loaded.cfg.data, job.sample) if job.conditional else None
    traj = [(k, t.cpu().tolist()) for k, t in res.trajectory]
    pieces: dict = {}  # token pieces memoized across the batch's frames
    mask_id = getattr(job.sampler, "mask_id", None)  # a masked-diffusion sampler's canvas shows [MASK]
    out = []
    for j, ids in enumerate(all_ids):
        rec = {"type": "sample", "index": start + j}
        if job.conditional:
            ids = ids[n_cond[j]:][:keep]
            rec["text"], rec["input"] = decode_ids(tok, ids), batch_inputs[j]["input"]
            if "reference" in batch_inputs[j]:
                rec["reference"] = batch_inputs[j]["reference"]
        elif layout is not None:
            mid, full = infill_text_ids(ids, layout, eos_id(tok))
            rec["middle"], rec["text"] = decode_ids(tok, mid), decode_ids(tok, full)
            rec["prefix"], rec["suffix"] = req.prefix or "", req.suffix or ""
        else:
            rec["text"] = decode_ids(tok, ids)
        rec["token_ids"] = ids
        if traj:  # each frame shows what the final text shows: the target of a conditional, the infill's full text
            rec["trajectory"] = [_frame(tok, k, t[j], n_cond[j] if job.conditional else 0, layout, pieces,
                                        mask_id, keep) for k, t in traj]
        out.append(rec)
    return out


def _frame(tok, step: int, row: list[int], n_cond: int, layout: Optional[dict], cache: dict,
           mask_id: Optional[int] = None, keep: Optional[int] = None) -> dict:
    """One trajectory frame of one row, cut as the final text is (condition dropped and the output capped at
    ``keep`` tokens; infill prefix + middle + suffix, the pinned prefix and suffix marked)."""
    from elfctl.data.tokenize import eos_id
    from elfctl.sampling.conditioning import infill_text_ids
    from elfctl.sampling.trajectory import frame_record

    if layout is None:
        return frame_record(tok, step, row[n_cond:][:keep], cache=cache, mask_id=mask_id)
    mid, full = infill_text_ids(row, layout, eos_id(tok))
    pre, suf = len(layout["prefix_ids"]), len(layout["suffix_ids"])
    return frame_record(tok, step, full, pinned=[(0, pre), (pre + len(mid), pre + len(mid) + suf)], cache=cache,
                        mask_id=mask_id)


def output_length(data_cfg, sample: SampleConfig) -> Optional[int]:
    """Tokens a conditional sample keeps after its condition: ``sample.max_new_tokens``, else the authors' rule
    ``max_length - max_input_length`` (None: everything after the condition)."""
    if sample.max_new_tokens is not None:
        return sample.max_new_tokens
    return data_cfg.max_length - data_cfg.max_input_length if data_cfg.max_input_length else None


def _header(job: _Job, seed: int, *, stats: Optional[dict] = None, wall: Optional[float] = None,
            num: Optional[int] = None) -> dict:
    """The samples header; without ``stats`` (the partial file's) it says ``"partial": true``."""
    from elfctl.sampling.precision import precision_label

    from elfctl.family import load_family

    loaded, s = job.loaded, job.sample
    family = loaded.cfg.model.family
    header = {"type": "header", "checkpoint": str(loaded.checkpoint), "step": loaded.meta.get("step"),
              "run_dir": str(job.run_dir), "recipe": loaded.cfg.name, "task": loaded.cfg.data.task,
              "family": family, "sampler": load_family(family).sampler_record(s), "guidance": job.guidance,
              "seed": seed}
    if stats is None:
        header["partial"] = True
    else:
        header.update({"nfe": stats["nfe"] + stats["traj"],
                       "nfe_breakdown": stats.get("breakdown") or {
                           "denoise": stats["nfe"] - 1, "decode": 1, "trajectory": stats["traj"],
                           "rows_per_denoise": 2 if (s.cfg != 1.0 and job.conditional) else 1},
                       "rows_per_batch": stats["rows"], "wall_time_s": wall})
    header.update({"ema": loaded.ema, "device": str(job.device), "precision": precision_label(job.device, s.bf16),
                   "compile": s.compile, "kernels_backend": job.backend, "num_samples": num,
                   "tokenizer": loaded.cfg.encoder.tokenizer or loaded.cfg.encoder.source})
    if job.conditional:  # what the run was trained with, and how much of each output is kept
        header.update(cond_layout=loaded.cfg.data.cond_layout, max_new_tokens=output_length(loaded.cfg.data, s))
    return header


class PartialFile:
    """``<out>.partial``: the header, then each finished batch appended and flushed, so an interruption keeps them."""

    def __init__(self, out: Path, header: dict):
        self.path, self.count = out.with_name(out.name + ".partial"), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")
        self._write([header])

    def _write(self, rows: list[dict]) -> None:
        self.f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.f.flush()
        os.fsync(self.f.fileno())

    def append(self, rows: list[dict]) -> None:
        self._write(rows)
        self.count += len(rows)

    def drop(self) -> None:
        self.f.close()
        self.path.unlink(missing_ok=True)

    def keep_or_drop(self, log: Log) -> None:
        """After a failure or Ctrl-C: keep the samples drawn so far (one line says where), or remove an empty file."""
        if self.count == 0:
            self.drop()
            return
        self.f.close()
        log(f"kept the {self.count} samples drawn before the stop in {self.path} (a header marked partial, then "
            f"the samples)")


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
            self.bar = None

"""Run an ablation: for every variant, a short pipeline of named steps (train → sample → eval), each calling the
library directly (:class:`~elfctl.train.trainer.Trainer`, :func:`~elfctl.sampling.run.run_sampling`,
:func:`~elfctl.eval.report.score_samples`).

Everything lands in ``<out>/<ablation>-<scale>/``: ``runs/<key>/`` (one training run per distinct set of train
overrides; resumed if interrupted, skipped if finished), ``samples/<variant>-<hash>.jsonl`` and
``eval/<variant>-<hash>.json`` (reused when the settings hash matches), ``results.json`` and PNG plots. A finished
run elsewhere that trained the same model (``runs/quickstart`` for the quick scale) is used instead of training
again (:mod:`elfctl.ablate.reuse`), with one line saying so.

A step that fails stops the ablation with its own message, prefixed by the ablation, variant and step. To add a
step (e.g. distillation after training), write ``def my_step(job: Job, variant: VariantState) -> None`` and
insert ``("my-step", my_step)`` into :data:`PIPELINE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from elfctl.ablate.distill_step import distill_step
from elfctl.ablate.spec import AblationSpec, Variant, sample_settings
from elfctl.atomic import atomic_write_json
from elfctl.config import Config, load_config
from elfctl.errors import ConfigError, ElfError, ElfRuntimeError
from elfctl.rundir.names import CONFIG_NAME
from elfctl.train.loggers import read_metrics

Log = Callable[[str], None]


@dataclass
class Job:
    """One ablation at one scale: what every variant shares."""

    spec: AblationSpec
    scale: str
    recipe: str
    overrides: list[str]          # the scale's overrides, then the command line's
    root: Path
    log: Log
    reuse_roots: list[Path]
    judges: dict = field(default_factory=dict)   # loaded once, shared by the variants' eval steps
    baselines: Optional[dict] = None             # the data / random-token rows, scored once (spec.baselines)


@dataclass
class VariantState:
    """What the steps of one variant produce, in order."""

    variant: Variant
    cfg: Config                   # the variant's resolved config, its sample overrides included
    train_cfg: Config             # what is trained: the same without the sample overrides (shared by the variants
                                  # of one run, so resuming it never sees a different config)
    run_dir: Path = Path()
    trained_cfg: Optional[Config] = None   # the config the checkpoint used was trained with
    step: int = 0
    reused: Optional[str] = None
    samples: Optional[Path] = None              # the first seed's file
    sample_files: list[Path] = field(default_factory=list)   # one per seed
    result: Optional[Path] = None
    results: dict = field(default_factory=dict)


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_key(variant: Variant) -> str:
    return "base" if not variant.train else "-".join(o.split("=", 1)[1] for o in variant.train)


# --------------------------------------------------------------------------- the steps

def train_step(job: Job, v: VariantState) -> None:
    """Use a finished run of the same model if there is one; else train (or resume) the variant's own run."""
    from elfctl.ablate.reuse import find_finished_run
    from elfctl.rundir import checkpoint as ckpt

    own = job.root / "runs" / run_key(v.variant)
    match = find_finished_run(v.train_cfg, own, job.reuse_roots)
    if match is not None:
        v.run_dir, v.step, v.trained_cfg = match.run_dir, match.step, match.cfg
        if match.run_dir.resolve() != own.resolve():
            v.reused = str(match.run_dir)
            job.log(f"[{v.variant.name}] train: reusing the finished run {match.run_dir} (same training config, "
                    f"step {match.step}) instead of training again")
        else:
            job.log(f"[{v.variant.name}] train: {own} is finished (step {match.step})")
        return
    from elfctl.train.trainer import Trainer

    cfg = dataclasses.replace(v.train_cfg, train=dataclasses.replace(v.train_cfg.train, run_dir=str(own)))
    job.log(f"[{v.variant.name}] train {job.recipe} {' '.join([*job.overrides, *v.variant.train])} -> {own}")
    result = Trainer(cfg, log=job.log).run()
    latest = ckpt.latest_checkpoint(own)
    v.run_dir, v.step, v.trained_cfg = own, int(result.step), cfg
    if latest is not None:
        from elfctl.config import load_resolved

        v.trained_cfg = load_resolved(latest / CONFIG_NAME)


def _sample_settings(job: Job, v: VariantState) -> dict:
    """The sample settings given explicitly (scale, command line, variant), plus the variant config's values
    wherever the checkpoint's own sample section differs (a reused run may have been trained with other sample
    defaults; the samples must not depend on which run was used)."""
    settings = {**sample_settings(job.overrides), **v.variant.sample_settings()}
    saved = v.trained_cfg.sample if v.trained_cfg is not None else v.cfg.sample
    explicit = set(settings)
    for f in dataclasses.fields(v.cfg.sample):
        key = f.name
        if key in explicit or getattr(saved, key) == getattr(v.cfg.sample, key):
            continue
        if key in ("sampler", "gamma") and explicit & {"sampler", "gamma"}:
            continue  # the explicit one decides the other
        if key == "cfg" and v.cfg.data.task != "conditional":
            continue  # an unconditional model's cfg would be read as its SC-CFG scale
        settings[key] = getattr(v.cfg.sample, key)
    return settings


def sample_step(job: Job, v: VariantState) -> None:
    """Sample the variant's settings from its run (reused when the same run, step and settings were sampled)."""
    from elfctl.sampling.run import SampleRequest, run_sampling

    settings = _sample_settings(job, v)
    seeds = job.spec.seeds
    key = _hash(str(Path(v.run_dir).resolve()), v.step, settings, *([seeds] if seeds else []))
    out = job.root / "samples" / f"{v.variant.name}-{key}.jsonl"
    v.sample_files = [out.with_name(f"{out.stem}-s{s}{out.suffix}") for s in seeds] if len(seeds) > 1 else \
        [out.with_name(f"{out.stem}-s{seeds[0]}{out.suffix}")] if seeds else [out]
    v.samples = v.sample_files[0]
    if all(p.is_file() for p in v.sample_files):
        return
    job.log(f"[{v.variant.name}] sample " + " ".join(f"{k}={val}" for k, val in settings.items())
            + (f" seeds={','.join(map(str, seeds))}" if seeds else ""))
    target = out if len(seeds) > 1 else v.samples
    for _ in run_sampling(SampleRequest(ref=v.run_dir, settings=settings, seeds=list(seeds), out=target),
                          log=job.log):
        pass


def eval_metrics(cfg: Config, spec: AblationSpec) -> str:
    if cfg.data.task == "conditional" and spec.metrics == ["genppl"]:
        return "rouge"
    return ",".join(spec.metrics)


def _judge(job: Job, cfg: Config, metrics: str):
    """The judge a run's eval section names, loaded once per ablation (its tokenizer alone for entropy)."""
    from elfctl.eval.report import parse_metrics

    names = parse_metrics(metrics)
    if "genppl" not in names:
        return cfg.eval.judge
    key = (cfg.eval.judge, cfg.eval.judge_dtype)
    if key not in job.judges:
        from elfctl.eval.judge import load_judge

        job.judges[key] = load_judge(cfg.eval.judge, dtype=cfg.eval.judge_dtype)
    return job.judges[key]


def eval_step(job: Job, v: VariantState) -> None:
    """Score the samples under the variant's eval section; results JSON reused like the samples."""
    from elfctl.eval.report import score_samples

    v.result = job.root / "eval" / f"{v.samples.stem}.json"
    if not v.result.is_file():
        job.log(f"[{v.variant.name}] eval")
        metrics, ev = eval_metrics(v.cfg, job.spec), v.cfg.eval
        files = v.sample_files or [v.samples]
        res = score_samples(files if len(files) > 1 else files[0], metrics, judge=_judge(job, v.cfg, metrics),
                            protocol=ev.protocol, judge_dtype=ev.judge_dtype, max_length=ev.max_judge_length,
                            batch_size=ev.judge_batch_size, bootstrap=ev.bootstrap, run_cfg=v.cfg,
                            baselines=job.spec.baselines and job.baselines is None)
        atomic_write_json(v.result, res)
    v.results = json.loads(v.result.read_text(encoding="utf-8"))
    if job.spec.baselines and job.baselines is None and "data" in v.results.get("rows", {}):
        # the held-out data and random tokens do not depend on the variant: scored with the first one
        job.baselines = {k: {m: v.results["rows"][k].get(m) for m in ("genppl", "entropy", "source")}
                         for k in ("data", "random") if k in v.results["rows"]}


PIPELINE: list[tuple[str, Callable[[Job, VariantState], None]]] = [
    ("train", train_step),
    ("distill", distill_step),  # variants marked `distill: true` swap the run for its distilled student
    ("sample", sample_step),
    ("eval", eval_step),
]


def run_step(job: Job, v: VariantState, name: str, fn: Callable[[Job, VariantState], None]) -> None:
    """Run one step; a failure keeps its own message (and exit code), prefixed with where it happened."""
    where = f"ablation {job.spec.name} ({job.scale}), variant '{v.variant.name}', {name} step"
    try:
        fn(job, v)
    except ElfError as e:
        raise type(e)(f"{where}: {e}") from e
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - anything else keeps its type and message
        raise ElfRuntimeError(f"{where}: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- the table

def final_train_loss(run_dir: Path) -> Optional[float]:
    tail = [m["loss"] for m in read_metrics(run_dir)[-5:] if "loss" in m]
    return sum(tail) / len(tail) if tail else None


def _row(job: Job, v: VariantState) -> dict[str, Any]:
    from elfctl.ablate.costs import model_costs, sampling_costs
    from elfctl.eval.report import headline

    row = {"variant": v.variant.name, "train": v.variant.train, "sample": v.variant.sample,
           "run_dir": str(v.run_dir), "reused_run": v.reused, "step": v.step,
           "train_loss": final_train_loss(v.run_dir), "samples": str(v.samples), "eval": str(v.result),
           "series": v.variant.series or ("student" if v.variant.distill else
                                          "teacher" if any(x.distill for x in job.spec.variants) else "model"),
           **headline(v.results), **model_costs(Path(v.run_dir)),
           **sampling_costs(v.sample_files or [v.samples])}
    if len(v.sample_files) > 1:
        row["sample_files"] = [str(p) for p in v.sample_files]
    if job.spec.plot_x:
        section, key = job.spec.plot_x.split(".", 1)
        row["x"] = getattr(getattr(v.cfg, section), key)
    return row


def run_ablation(spec: AblationSpec, scale: str, out: Path, *, extra: list[str] = (), log: Log = print,
                 reuse_roots: Optional[list[Path]] = None) -> dict:
    """Every variant through :data:`PIPELINE`; writes and returns the summary (``results.json``).

    ``reuse_roots``: folders whose run directories may be reused when finished and matching (default:
    ``runs/`` and ``out``).
    """
    from elfctl.ablate.spec import check_scale

    check_scale(spec, scale, list(extra))
    spec = spec.at_scale(scale)
    if any(v.distill for v in spec.variants) and "distill" not in dict(PIPELINE):
        raise ConfigError(f"{spec.path or spec.name}: variants with 'distill: true' need a distill step, which this "
                          f"elfctl's ablation pipeline does not have")
    recipe, base = spec.scale(scale)
    root = Path(out) / f"{spec.name}-{scale}"
    job = Job(spec, scale, recipe, [*base, *extra], root, log,
              reuse_roots if reuse_roots is not None else [Path("runs"), Path(out)])
    rows = []
    for variant in spec.variants:
        state = VariantState(variant, load_config(recipe, [*job.overrides, *variant.train, *variant.sample]),
                             load_config(recipe, [*job.overrides, *variant.train]))
        for name, fn in PIPELINE:
            run_step(job, state, name, fn)
        rows.append(_row(job, state))
    asked = list(dict.fromkeys(m for r in rows for m in (r.get("metrics") or [])))  # what the table shows
    summary = {"ablation": spec.name, "scale": scale, "recipe": recipe, "description": spec.description,
               "finding": spec.finding, "plot_x": spec.plot_x, "metrics": asked, "seeds": spec.seeds or None,
               "baselines": job.baselines, "rows": rows}
    from elfctl.ablate.plots import write_plots

    try:
        summary["plots"] = [str(p) for p in write_plots(summary, root)]
    finally:  # the scores never depend on the plots: a plot that fails still leaves results.json
        atomic_write_json(root / "results.json", summary)
    return summary

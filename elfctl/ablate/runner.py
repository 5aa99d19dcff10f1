"""Run an ablation: for every variant, train → sample → eval through the same commands users type.

Everything lands in ``<out>/<ablation>-<scale>/``: ``runs/<key>/`` (one training run per distinct set of
train overrides; resumed if interrupted, skipped if finished), ``samples/<variant>-<hash>.jsonl`` and
``eval/<variant>-<hash>.json`` (reused when the settings hash matches), ``results.json`` and PNG plots.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

from elfctl.ablate.spec import AblationSpec
from elfctl.config import Config, load_config
from elfctl.errors import ElfRuntimeError
from elfctl.train import checkpoint as ckpt

SAMPLE_FLAGS = {"steps": "--steps", "sampler": "--sampler", "gamma": "--gamma", "time_grid": "--time-grid",
                "sc_cfg": "--sc-cfg", "num_samples": "--num-samples", "batch_size": "--batch-size",
                "seed": "--seed"}


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def _cli(args: list[str]) -> None:
    from elfctl.cli import main

    code = main([str(a) for a in args])
    if code != 0:
        raise ElfRuntimeError(f"ablation step failed (exit {code}): elfctl {' '.join(map(str, args))}")


def sample_flags(cfg: Config) -> list[str]:
    flags: list[str] = []
    for key, flag in SAMPLE_FLAGS.items():
        flags += [flag, str(getattr(cfg.sample, key))]
    if cfg.data.task == "conditional":
        flags += ["--cfg", str(cfg.sample.cfg)]
    return flags


def eval_metrics(cfg: Config, spec: AblationSpec) -> str:
    if cfg.data.task == "conditional" and spec.metrics == ["genppl"]:
        return "rouge"
    return ",".join(spec.metrics)


def read_headline(result_path: Path) -> dict:
    """The numbers a table row shows, from an ``elfctl eval`` results JSON."""
    from elfctl.eval.report import headline

    return headline(json.loads(result_path.read_text(encoding="utf-8")))


def final_train_loss(run_dir: Path) -> Optional[float]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    tail = lines[-5:]
    return sum(m["loss"] for m in tail) / len(tail) if tail else None


def run_ablation(spec: AblationSpec, scale: str, out: Path, *, extra: list[str] = (),
                 log: Callable[[str], None] = print) -> dict:
    recipe, base = spec.scale(scale)
    root = Path(out) / f"{spec.name}-{scale}"
    rows = []
    for variant in spec.variants:
        train_over = [*base, *extra, *variant.train]
        run_key = "base" if not variant.train else "-".join(o.split("=", 1)[1] for o in variant.train)
        run_dir = root / "runs" / run_key
        cfg = load_config(recipe, [*train_over, *variant.sample, f"train.run_dir={run_dir}"])
        log(f"[{variant.name}] train {recipe} {' '.join(train_over)} -> {run_dir}")
        _cli(["train", recipe, *train_over, f"train.run_dir={run_dir}"])
        step = ckpt.read_meta(ckpt.latest_checkpoint(run_dir))["step"]

        flags = sample_flags(cfg)
        key = _hash(str(run_dir), step, flags)
        samples = root / "samples" / f"{variant.name}-{key}.jsonl"
        if not samples.is_file():
            log(f"[{variant.name}] sample {' '.join(flags)}")
            samples.parent.mkdir(parents=True, exist_ok=True)
            _cli(["sample", "--run", run_dir, *flags, "--out", samples])
        result = root / "eval" / f"{variant.name}-{key}.json"
        if not result.is_file():
            log(f"[{variant.name}] eval")
            result.parent.mkdir(parents=True, exist_ok=True)
            _cli(["eval", "--metric", eval_metrics(cfg, spec), "--samples", samples, "--judge", cfg.eval.judge,
                  "--out", result])
        row = {"variant": variant.name, "train": variant.train, "sample": variant.sample, "run_dir": str(run_dir),
               "step": step, "train_loss": final_train_loss(run_dir), "samples": str(samples),
               "eval": str(result), **read_headline(result)}
        if spec.plot_x:
            section, field = spec.plot_x.split(".", 1)
            row["x"] = getattr(getattr(cfg, section), field)
        rows.append(row)
    summary = {"ablation": spec.name, "scale": scale, "recipe": recipe, "description": spec.description,
               "finding": spec.finding, "plot_x": spec.plot_x, "rows": rows}
    (root / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    from elfctl.ablate.plots import write_plots

    summary["plots"] = [str(p) for p in write_plots(summary, root)]
    (root / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary

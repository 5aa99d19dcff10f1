"""Finding a finished training run that an ablation variant can use instead of training the same model again.

A run matches when its newest checkpoint was trained with the same resolved config as the variant's, compared
key by key except where the two may differ without changing the trained model: the keys the config schema marks
as such (``effect`` "runtime": device, parallelism, micro-batch, compile; "record": where and how often it logs,
checkpoints and caches), and the ``sample`` / ``eval`` sections. It is finished when that checkpoint's
step has reached ``train.steps``. (Configs that give the length as ``train.epochs`` are resolved only by the
trainer, so such runs are not reused.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import yaml

from elfctl.config import Config, config_differences, keys_with_effect, load_resolved
from elfctl.errors import ConfigError
from elfctl.rundir import checkpoint as ckpt
from elfctl.rundir.names import CONFIG_NAME

# Everything that leaves the trained model unchanged: the schema's runtime and record keys (elfctl.config.EFFECTS),
# the recipe's names and the sections that only say how a model is sampled and scored.
IGNORED = keys_with_effect("runtime", "record") | {"name", "description", "paper", "sample", "eval"}


@dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    checkpoint: Path
    step: int
    cfg: Config          # the config its newest checkpoint was trained with


def training_differences(a: dict, b: dict) -> list[str]:
    """Key paths where two resolved configs would train different models."""
    return [path for path, _, _ in config_differences(a, b, ignore=IGNORED)]


def finished_run(run_dir: Path, cfg: Config) -> Optional[FinishedRun]:
    """``run_dir`` as a :class:`FinishedRun` when it holds a finished training of ``cfg``'s model, else None."""
    if cfg.train.steps is None:
        return None
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None or not (latest / CONFIG_NAME).is_file():
        return None
    try:
        saved = load_resolved(latest / CONFIG_NAME)
        # compared as written, not as re-read: a key the run's elfctl did not have yet (filled in with today's
        # default by load_resolved) may not describe what that run did
        raw = yaml.safe_load((latest / CONFIG_NAME).read_text(encoding="utf-8"))
        step = int(ckpt.read_meta(latest)["step"])
    except (ConfigError, OSError, KeyError, ValueError, yaml.YAMLError):
        return None  # a run of another elfctl version, or a torn file: not a match
    if step < cfg.train.steps or not isinstance(raw, dict) or training_differences(raw, cfg.to_dict()):
        return None
    return FinishedRun(Path(run_dir), latest, step, saved)


def candidate_dirs(own: Path, cfg_default: Path, roots: Iterable[Path]) -> list[Path]:
    """Where a match is looked for, best first: the variant's own run directory, the recipe's default run
    directory (``runs/quickstart``), then every run directory under ``roots`` (sorted by name)."""
    seen, out = set(), []
    found = [own, cfg_default]
    for root in roots:
        root = Path(root)
        if root.is_dir():
            found += sorted(p.parent for p in root.glob("*/config.yaml"))
            found += sorted(p.parent for p in root.glob("*/runs/*/config.yaml"))
    for d in found:
        key = Path(d).resolve()
        if key not in seen:
            seen.add(key)
            out.append(Path(d))
    return out


def find_finished_run(cfg: Config, own: Path, roots: Iterable[Path]) -> Optional[FinishedRun]:
    """The first finished run of ``cfg``'s model among :func:`candidate_dirs`."""
    for d in candidate_dirs(own, cfg.resolved_run_dir(), roots):
        match = finished_run(d, cfg)
        if match is not None:
            return match
    return None

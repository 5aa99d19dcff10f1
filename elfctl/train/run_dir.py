"""A run directory's identity: its saved ``config.yaml`` describes the trained model and never changes under it.

* A run with checkpoints keeps the config it was trained with. Training again into it with a config that
  differs anywhere (any section, except the few keys below that say where or how fast it runs, not what
  is trained) is refused with every difference listed; ``--new`` starts a new directory instead
  (``runs/quickstart`` → ``runs/quickstart-2``).
* ``config.yaml`` is written once, when training is about to start (setup succeeded), never overwritten while
  the run has checkpoints.
* A train that fails before its first checkpoint in a directory it created removes what it wrote there
  (config, metrics, lock), so a failed first attempt leaves no run behind (a precomputed latent cache stays).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Optional

from elfctl.atomic import atomic_write_text
from elfctl.config import Config, load_resolved
from elfctl.errors import ConfigError
from elfctl.train import checkpoint as ckpt
from elfctl.train.run_lock import LOCK_NAME, RunLock

CONFIG_NAME = "config.yaml"
# Keys that say where, on what or how fast a run executes, not what it trains (global batch, data, model and
# optimisation stay): they may differ on resume, e.g. a run started with FSDP on 2 GPUs resumed on one GPU with
# train.grad_accum=2.
RUNTIME_KEYS = ("train.run_dir", "train.device", "train.fsdp", "train.grad_accum", "train.micro_batch_size", "train.dist_timeout_min",
                "train.compile",
                "model.gradient_checkpointing", "data.num_workers", "data.data_dir", "data.prefetch_factor",
                "data.tokenize_workers", "train.loggers", "train.wandb_project")
# What a failed first attempt may have written into a directory it created.
FIRST_ATTEMPT_FILES = (CONFIG_NAME, "metrics.jsonl")


def config_differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """Every key path where two resolved configs differ, as ``path: run has A, now B``."""
    out = []
    for key in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(key), now.get(key)
        path = f"{prefix}{key}"
        if path in RUNTIME_KEYS:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: run has {a!r}, now {b!r}")
    return out


def saved_config_path(run_dir: Path, latest: Optional[Path]) -> Optional[Path]:
    """The config the run was trained with: its config.yaml, else its newest checkpoint's copy."""
    if (run_dir / CONFIG_NAME).is_file():
        return run_dir / CONFIG_NAME
    if latest is not None and (latest / CONFIG_NAME).is_file():
        return latest / CONFIG_NAME
    return None


def check_same_config(run_dir: Path, cfg: Config, latest: Optional[Path]) -> None:
    """Refuse (one line, all differences) to train a run that has checkpoints with a different config."""
    if latest is None:
        return  # nothing trained yet: a leftover config.yaml describes no model
    path = saved_config_path(run_dir, latest)
    if path is None:
        return
    diffs = config_differences(load_resolved(path).to_dict(), cfg.to_dict())
    if diffs:
        raise ConfigError(f"{run_dir} was trained with another config ({len(diffs)} difference"
                          f"{'s' if len(diffs) > 1 else ''}: {'; '.join(diffs)}); its saved config never changes: "
                          f"pass --new for a new run directory, or set train.run_dir")


def new_run_dir(base: Path) -> Path:
    """``base`` when it does not exist (or is empty), else the first free ``base-2``, ``base-3``, ..."""
    if not base.exists() or (base.is_dir() and not any(base.iterdir())):
        return base
    n = 2
    while Path(f"{base}-{n}").exists():
        n += 1
    return Path(f"{base}-{n}")


def write_run_config(run_dir: Path, cfg: Config) -> None:
    """Write the run's config.yaml unless the run already has one that binds it (it has checkpoints)."""
    path = run_dir / CONFIG_NAME
    if path.is_file() and ckpt.list_checkpoints(run_dir):
        return
    atomic_write_text(path, cfg.to_yaml())


@contextlib.contextmanager
def claimed(run_dir: Path, *, command: str, log: Callable[[str], None], is_main: bool = True) -> Iterator[None]:
    """Hold the run's lock (rank 0) for the block; if the block fails before the first checkpoint of a
    directory it created, remove what it wrote there."""
    created = not run_dir.exists()
    lock = RunLock(run_dir, command=command, log=log) if is_main else None
    if lock is not None:
        lock.acquire()
    try:
        yield
    except BaseException:
        if is_main and created and not ckpt.list_checkpoints(run_dir):
            for name in FIRST_ATTEMPT_FILES:
                (run_dir / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (run_dir / ckpt.CKPT_DIR).rmdir()  # only when empty
        raise
    finally:
        if lock is not None:
            lock.release()
            if created and run_dir.is_dir() and not any(p.name != LOCK_NAME for p in run_dir.iterdir()):
                run_dir.rmdir()

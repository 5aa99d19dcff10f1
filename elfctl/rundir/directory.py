"""A run directory's identity: its saved ``config.yaml`` describes the trained model and never changes under it.

* A run with checkpoints keeps the config it was trained with. Training again into it with a config that
  differs anywhere (any section, except the few keys below that say where or how fast it runs, not what
  is trained) is refused with every difference listed; ``--new`` starts a new directory instead
  (``runs/quickstart`` → ``runs/quickstart-2``).
* The one exception: a run may be made longer. When the length keys (``train.steps`` / ``train.epochs``) are the only
  difference and the new length is past the run's last checkpoint, training continues from that checkpoint,
  ``config.yaml`` takes the new length and ``length_changes.jsonl`` records the change (old and new length, the
  step where it changed). Warm-up (given in steps, or in epochs of the same data) is unchanged; a cosine decay is
  recomputed over the new length, so its lr rises again at the change (the paper's constant schedule is unaffected).
* ``config.yaml`` is written once, when training is about to start (setup succeeded), and otherwise rewritten only
  to extend the run as above.
* A train that fails before its first checkpoint in a directory it created removes what it wrote there
  (config, metrics, lock), so a failed first attempt leaves no run behind (a precomputed latent cache stays).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Optional

from elfctl.atomic import atomic_write_text
from elfctl.config import Config, config_differences, keys_with_effect, load_resolved
from elfctl.errors import ConfigError
from elfctl.rundir import checkpoint as ckpt
from elfctl.rundir.lock import LOCK_NAME, RunLock
from elfctl.rundir.names import CONFIG_NAME

# Keys that say where, on what or how fast a run executes, not what it trains (the schema's effect "runtime"):
# they may differ on resume, e.g. a run started with FSDP on 2 GPUs resumed on one GPU with train.grad_accum=2.
RUNTIME_KEYS = keys_with_effect("runtime")
# Keys that only say how long the run trains: changing them extends (or shortens) the same run.
LENGTH_KEYS = ("train.steps", "train.epochs")
LENGTH_CHANGES_NAME = "length_changes.jsonl"
# What a failed first attempt may have written into a directory it created.
FIRST_ATTEMPT_FILES = (CONFIG_NAME, "metrics.jsonl")


def differing_keys(saved: dict, now: dict) -> list[tuple[str, object, object]]:
    """``(key path, saved value, new value)`` wherever two resolved configs differ, runtime keys left out."""
    return config_differences(saved, now, ignore=RUNTIME_KEYS)


def describe_differences(saved: dict, now: dict) -> list[str]:
    """Every key path where two resolved configs differ (runtime keys left out), as ``path: run has A, now B``."""
    return [f"{path}: run has {a!r}, now {b!r}" for path, a, b in differing_keys(saved, now)]


def saved_config_path(run_dir: Path, latest: Optional[Path]) -> Optional[Path]:
    """The config the run was trained with: its config.yaml, else its newest checkpoint's copy."""
    if (run_dir / CONFIG_NAME).is_file():
        return run_dir / CONFIG_NAME
    if latest is not None and (latest / CONFIG_NAME).is_file():
        return latest / CONFIG_NAME
    return None


def check_same_config(run_dir: Path, cfg: Config, latest: Optional[Path]) -> dict[str, tuple]:
    """Refuse (one line, all differences) to train a run that has checkpoints with a different config.

    Returns the length keys that changed (``{"train.steps": (4, 6)}``), the one change that is allowed: the caller
    continues the run to the new length (:func:`record_length_change`) or has nothing to do.
    """
    if latest is None:
        return {}  # nothing trained yet: a leftover config.yaml describes no model
    path = saved_config_path(run_dir, latest)
    if path is None:
        return {}
    diffs = differing_keys(load_resolved(path).to_dict(), cfg.to_dict())
    if diffs and all(key in LENGTH_KEYS for key, _, _ in diffs):
        return {key: (a, b) for key, a, b in diffs}
    if diffs:
        shown = [f"{key}: run has {a!r}, now {b!r}" for key, a, b in diffs]
        raise ConfigError(f"{run_dir} was trained with another config ({len(diffs)} difference"
                          f"{'s' if len(diffs) > 1 else ''}: {'; '.join(shown)}); its saved config never changes "
                          f"(only {' / '.join(LENGTH_KEYS)} may, to train it longer): "
                          f"pass --new for a new run directory, or set train.run_dir")
    return {}


def record_length_change(run_dir: Path, cfg: Config, changed: dict[str, tuple], *, at_step: int, old_steps: int,
                         new_steps: int) -> None:
    """The run now trains to ``new_steps``: its config.yaml says so and ``length_changes.jsonl`` keeps the history."""
    import json
    import time

    entry = {"at_step": at_step, "old_steps": old_steps, "new_steps": new_steps,
             "keys": {k: {"old": a, "new": b} for k, (a, b) in changed.items()},
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    history = run_dir / LENGTH_CHANGES_NAME
    before = history.read_text() if history.is_file() else ""
    atomic_write_text(history, before + json.dumps(entry) + "\n")
    atomic_write_text(run_dir / CONFIG_NAME, cfg.to_yaml())


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

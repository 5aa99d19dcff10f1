"""Checkpoints: atomic on disk, weights as safetensors, found by run directory or path.

Layout of a run directory::

    runs/<name>/config.yaml                 resolved recipe of the run
    runs/<name>/metrics.jsonl               one JSON line per log step
    runs/<name>/checkpoints/step_00000500/  one complete checkpoint:
        model.safetensors   raw weights          ema.safetensors   EMA weights
        encoder.safetensors (learned encoders)   train_state.pt    optimizer/scheduler/RNG/data position
        config.yaml         the run's config     meta.json         step, latent_dim, vocab_size, ...

A checkpoint is written into a hidden temporary directory, every file fsynced, then renamed into place:
killing the process at any moment leaves the previous checkpoint intact and loadable. ``meta.json`` is
written last, so a directory without it is never considered complete. ``train_state.pt`` holds only
tensors and plain containers and is read with ``torch.load(weights_only=True)``: no arbitrary unpickling.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from elfctl.errors import ConfigError

CKPT_DIR = "checkpoints"
PREFIX = "step_"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file via temp + fsync + rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_checkpoint(run_dir: Path, step: int, *, model_state: dict, ema_state: dict, train_state: dict,
                    meta: dict, config_yaml: str, encoder_state: Optional[dict] = None,
                    keep_last: int = 3) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep_last``."""
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_contiguous_cpu(model_state), tmp / "model.safetensors")
    save_file(_contiguous_cpu(ema_state), tmp / "ema.safetensors")
    if encoder_state:
        save_file(_contiguous_cpu(encoder_state), tmp / "encoder.safetensors")
    torch.save(train_state, tmp / "train_state.pt")
    (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2), encoding="utf-8")
    for f in tmp.iterdir():
        _fsync_file(f)
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): swap atomically-ish
        old = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    for stale in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _is_complete(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "model.safetensors").is_file()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and _is_complete(p)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_meta(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / "meta.json").read_text(encoding="utf-8"))


def load_tensors(ckpt: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(ckpt) / f"{name}.safetensors"))


def load_train_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / "train_state.pt", map_location="cpu", weights_only=True)


def newest_run(runs_root: Path) -> Path:
    """The run directory (under ``runs_root``) whose newest checkpoint is the most recent."""
    runs_root = Path(runs_root)
    runs = [p for p in runs_root.iterdir() if p.is_dir() and latest_checkpoint(p)] if runs_root.is_dir() else []
    if not runs:
        raise ConfigError(f"no trained run found under {runs_root.resolve()}/ (looked for */{CKPT_DIR}/{PREFIX}*); "
                          f"train one with `elfctl train quickstart` or pass --checkpoint/--run")
    return max(runs, key=lambda p: latest_checkpoint(p).stat().st_mtime)


def resolve_checkpoint(ref: Optional[str | Path], *, runs_root: Path = Path("runs"),
                       trust_pickle: bool = False) -> Path:
    """A checkpoint directory from: None (newest run), a run directory, a checkpoint directory, or a file in one.

    Pickle files (.pt/.pth/.bin/...) given directly are refused unless ``trust_pickle``.
    """
    if ref is None:
        return latest_checkpoint(newest_run(runs_root))
    path = Path(ref)
    if not path.exists():
        raise ConfigError(f"checkpoint or run not found: {path} (looked at {path.resolve()})")
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES and not trust_pickle:
            raise ConfigError(f"{path} is a pickle file, which can run arbitrary code when loaded; refusing. "
                              f"Convert it to safetensors, or pass --trust-pickle if you trust its source")
        if path.suffix in PICKLE_SUFFIXES:
            return path
        path = path.parent
    if _is_complete(path):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise ConfigError(f"{path} holds no complete checkpoint (expected {path}/{CKPT_DIR}/{PREFIX}*/meta.json)")
    return latest


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str) -> None:
    """Load weights, or raise one ConfigError listing every missing, unexpected and mis-shaped key."""
    check_state_dict(module.state_dict(), state, what=what)
    module.load_state_dict(state)


def check_state_dict(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], *, what: str) -> None:
    """Raise one ConfigError listing every key of ``state`` missing from, unexpected in or mis-shaped against
    ``own`` (a module's state dict; the full shapes of sharded DTensors count)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:6])}"
                         f"{' ...' if len(unexpected) > 6 else ''}")
        if shapes:
            parts.append(f"shape mismatch {len(shapes)}: {'; '.join(shapes[:6])}")
        raise ConfigError(f"{what} does not match this architecture ({' | '.join(parts)})")

"""Checkpoints: atomic on disk, weights as safetensors, found by run directory or path.

Layout of a run directory::

    runs/<name>/config.yaml                 resolved recipe of the run
    runs/<name>/metrics.jsonl               one JSON line per log step
    runs/<name>/checkpoints/step_00000500/  one complete checkpoint:
        model.safetensors   raw weights          ema.safetensors   EMA weights
        encoder.safetensors (learned encoders)   train_state.pt    optimizer/scheduler/RNG/data position
        config.yaml         the run's config     meta.json         step, latent_dim, vocab_size, ...

A checkpoint is written into a hidden temporary directory (every file through ``elfctl.atomic``, so fsynced),
then renamed into place: killing the process at any moment leaves the previous checkpoint intact and loadable.
``meta.json`` is written last and records the SHA-256 and size of every other file (``files``), so a directory
without it is never considered complete, and a file damaged later (a torn copy, a bad disk) is found by
:func:`verify_checkpoint` before it is used: every read through this module checks the file it reads. A write
that fails (disk full, permissions) removes its temporary directory and raises one line naming what failed;
the checkpoints already written are untouched. ``train_state.pt`` holds only tensors and plain containers and
is read with ``torch.load(weights_only=True)``: no arbitrary unpickling.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from elfctl.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from elfctl.errors import ConfigError, ElfRuntimeError
from elfctl.rundir.names import CONFIG_NAME

CKPT_DIR = "checkpoints"
PREFIX = "step_"
STEP_DIR = re.compile(rf"{PREFIX}\d+")
CORRUPT_PREFIX = "corrupt-"  # a damaged checkpoint moved aside (kept, never deleted, never listed)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


class CorruptCheckpoint(ConfigError):
    """A checkpoint file is missing, truncated or differs from the checksum its manifest recorded."""


class CheckpointWriteError(ElfRuntimeError):
    """Writing a checkpoint failed (disk full, permissions); the previous checkpoints are intact."""


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _write_hashed(path: Path, data: bytes, files: dict) -> None:
    atomic_write_bytes(path, data)
    files[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def save_checkpoint(run_dir: Path, step: int, *, model_state: dict, ema_state: dict, train_state: dict,
                    meta: dict, config_yaml: str, encoder_state: Optional[dict] = None,
                    keep_last: int = 3) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep_last``.

    Raises :class:`CheckpointWriteError` (one line) when the disk refuses the write; nothing is pruned then.
    """
    root = Path(run_dir) / CKPT_DIR
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files: dict[str, dict] = {}
        _write_hashed(tmp / "model.safetensors", save_safetensors(_contiguous_cpu(model_state)), files)
        _write_hashed(tmp / "ema.safetensors", save_safetensors(_contiguous_cpu(ema_state)), files)
        if encoder_state:
            _write_hashed(tmp / "encoder.safetensors", save_safetensors(_contiguous_cpu(encoder_state)), files)
        buf = io.BytesIO()
        torch.save(train_state, buf)
        _write_hashed(tmp / "train_state.pt", buf.getvalue(), files)
        _write_hashed(tmp / CONFIG_NAME, config_yaml.encode("utf-8"), files)
        atomic_write_json(tmp / "meta.json", {**meta, "step": step, "files": files})  # last: marks it complete
        fsync_dir(tmp)
        if final.exists():  # the same step again (resumed from an older one): set the previous copy aside
            _set_aside(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        raise CheckpointWriteError(
            f"could not write checkpoint step {step} under {root} ({e.strerror or e}); nothing was lost: "
            f"{'the previous checkpoint ' + str(previous) + ' is intact' if previous else 'no earlier checkpoint'}"
            f"; free space or fix permissions and run the same command to resume") from None
    for stale in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _set_aside(ckpt: Path) -> None:
    """Move a checkpoint directory out of the listing: a corrupt one is kept under ``corrupt-<name>``, an
    intact one (about to be replaced by the same step) is removed once moved."""
    try:
        verify_checkpoint(ckpt)
        intact = True
    except CorruptCheckpoint:
        intact = False
    aside = ckpt.with_name(f"{CORRUPT_PREFIX}{ckpt.name}" if not intact else f".old-{ckpt.name}-{os.getpid()}")
    n = 1
    while aside.exists():  # never overwrite an earlier corrupt copy
        n += 1
        aside = ckpt.with_name(f"{CORRUPT_PREFIX}{ckpt.name}.{n}")
    os.replace(ckpt, aside)
    if intact:
        shutil.rmtree(aside, ignore_errors=True)


def _is_complete(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "model.safetensors").is_file()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.fullmatch(p.name) and _is_complete(p)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_meta(ckpt: Path) -> dict:
    path = Path(ckpt) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing; {Path(ckpt)} is not a complete checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpoint(f"{path}: unreadable ({type(e).__name__}); the checkpoint is corrupt") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(f"{path}: not a checkpoint manifest (a JSON object)")
    return meta


def _read_verified(ckpt: Path, name: str, meta: Optional[dict] = None) -> bytes:
    """The bytes of one checkpoint file, checked against the size and SHA-256 recorded in its manifest."""
    path = Path(ckpt) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing from the checkpoint") from None
    except OSError as e:
        raise CorruptCheckpoint(f"{path}: unreadable ({e.strerror or e})") from None
    want = (meta if meta is not None else read_meta(ckpt)).get("files", {}).get(name)
    if want:  # checkpoints written before checksums were recorded have none: their loaders still check format
        if len(data) != want.get("bytes"):
            raise CorruptCheckpoint(f"{path}: {len(data)} bytes, but the checkpoint recorded {want.get('bytes')} "
                                    f"(truncated or damaged)")
        if hashlib.sha256(data).hexdigest() != want.get("sha256"):
            raise CorruptCheckpoint(f"{path}: its SHA-256 differs from the one the checkpoint recorded (damaged)")
    return data


def verify_checkpoint(ckpt: Path) -> dict:
    """Check every file the manifest lists (size and SHA-256); return the manifest. Raises
    :class:`CorruptCheckpoint` naming the first bad file. Older checkpoints without checksums are checked by
    parsing their safetensors headers."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    files = meta.get("files")
    if files:
        for name in files:
            _read_verified(ckpt, name, meta)
    else:
        for name in ("model", "ema", "encoder"):
            if (ckpt / f"{name}.safetensors").is_file() or name == "model":
                load_tensors(ckpt, name)
    return meta


def load_tensors(ckpt: Path, name: str) -> dict[str, torch.Tensor]:
    """``<name>.safetensors`` of a checkpoint, verified against its manifest."""
    data = _read_verified(ckpt, f"{name}.safetensors")
    try:
        tensors = load_safetensors(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for torn files
        raise CorruptCheckpoint(f"{Path(ckpt) / (name + '.safetensors')}: not a readable safetensors file "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    # safetensors' in-memory loader returns its tensors in a per-process hash order: sort them, as load_file
    # does, so that every rank walks the same keys in the same order (FSDP distributes them one collective each)
    return {k: tensors[k] for k in sorted(tensors)}


def load_train_state(ckpt: Path) -> dict[str, Any]:
    data = _read_verified(ckpt, "train_state.pt")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn zip / pickle raises many types
        raise CorruptCheckpoint(f"{Path(ckpt) / 'train_state.pt'}: unreadable ({type(e).__name__}); "
                                f"the checkpoint is corrupt") from None


def newest_intact_checkpoint(run_dir: Path, warn: Callable[[str], None]) -> Optional[Path]:
    """The newest checkpoint of a run whose files all verify. Each corrupt newer one costs one ``warn`` line
    naming it and the checkpoint used instead; corrupt ones are left in place. None when there is none at all;
    :class:`CorruptCheckpoint` when every one is corrupt."""
    ckpts = list_checkpoints(run_dir)
    bad: list[tuple[Path, str]] = []
    for path in reversed(ckpts):
        try:
            verify_checkpoint(path)
        except CorruptCheckpoint as e:
            bad.append((path, str(e)))
            continue
        for corrupt, why in bad:
            warn(f"checkpoint {corrupt} is corrupt ({why}); resuming from {path}, the newest intact one "
                 f"(the corrupt one is kept)")
        return path
    if bad:
        raise CorruptCheckpoint(f"every checkpoint of {run_dir} is corrupt; the newest: {bad[0][1]}")
    return None


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

"""Reading an authors' ``checkpoint_<step>`` file, safely.

Their file is a ``torch.save`` pickle of a dict (``params``, ``ema_params1``, ``opt_state``, ``lr_scheduler``,
``step``, ``epoch``, ``dropout_rng``, ``grad_accum_buffers``) holding only tensors, numbers, strings, lists and
dicts. It is read with ``torch.load(weights_only=True)`` and nothing else: that unpickler builds only those
types, so a crafted file that asks for any other callable (``os.system``, ``builtins.open``, ...) is refused
before anything runs. Zip-format files are memory-mapped: the optimizer state is never read into RAM.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from elfctl.authors.carried import carried_config
from elfctl.authors.keys import strip_wrapper_prefixes
from elfctl.errors import ConfigError

FILE_PREFIX = "checkpoint_"
_STEP = re.compile(r"(\d+)$")


@dataclass
class AuthorsCheckpoint:
    path: Path
    params: dict[str, torch.Tensor]           # raw weights, wrapper prefixes stripped
    ema: Optional[dict[str, torch.Tensor]]    # ``ema_params1`` (the sampling weights), or None if absent
    step: int
    epoch: Optional[int]
    entries: list[str]                        # the file's top-level keys, as found
    carried: Optional[dict] = None            # the run config an elfctl export carries (elfctl/authors/carried.py)


def file_step(path: Path) -> Optional[int]:
    """The step in a ``checkpoint_<step>`` name (their loader reads the trailing digits)."""
    m = _STEP.search(path.name)
    return int(m.group(1)) if m else None


def newest_checkpoint_file(folder: Path) -> Path:
    """The ``checkpoint_<step>`` file of highest step in ``folder`` (as the authors' loader picks it)."""
    found = [p for p in Path(folder).iterdir() if p.is_file() and p.name.startswith(FILE_PREFIX)
             and file_step(p) is not None]
    if not found:
        raise ConfigError(f"{folder}: holds no {FILE_PREFIX}<step> file (the authors' checkpoint name); give the "
                          f"file itself or the folder that holds it")
    return max(found, key=lambda p: file_step(p))


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_load(path: Path):
    """``torch.load(weights_only=True)`` with one-line errors; a pickle asking for code is refused unexecuted."""
    path = Path(path)
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise ConfigError(f"{path}: refused: the pickle asks for {found.group(1)}, which an ELF checkpoint (only "
                              f"tensors, numbers, strings, lists and dicts) never does; nothing in it was executed"
                              ) from None
        detail = re.search(r"(Unsupported operand \d+|invalid load key[^\n]*)", str(e))
        raise ConfigError(f"{path}: not a torch.save checkpoint that torch.load(weights_only=True) can read "
                          f"({detail.group(1) if detail else 'unreadable pickle'}); nothing in it was executed"
                          ) from None
    except Exception as e:  # noqa: BLE001 - bytes that are no checkpoint make the unpickler fail in any way
        raise ConfigError(f"{path}: not a torch.save checkpoint: {_why_unreadable(path, e, is_zip)} (nothing in it "
                          f"was executed)") from None


def _why_unreadable(path: Path, e: Exception, is_zip: bool) -> str:
    """One whole clause saying why torch.load could not read ``path`` (never a message cut mid-sentence)."""
    text = " ".join(str(e).split())
    if "failed reading zip archive" in text:  # a zip whose end (its directory) is missing: cut short
        return "its zip archive is truncated or damaged; copy or download it again"
    if is_zip:
        return "a zip archive, but not one torch.save wrote; give an ELF checkpoint_<step> file"
    if isinstance(e, EOFError) or "unexpected EOF" in text or "Ran out of input" in text:
        return "the file ends early: it is truncated; copy or download it again"
    if isinstance(e, (KeyError, IndexError)):  # the unpickler read a byte that starts no pickle instruction
        with open(path, "rb") as f:
            head = f.read(256)
        kind = "text" if head and all(32 <= b < 127 or b in b"\t\n\r" for b in head) else "bytes"
        return f"its {kind} {'is' if kind == 'text' else 'are'} not a pickle; give an ELF checkpoint_<step> file"
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]  # the first whole sentence
    return (first.rstrip(".") or type(e).__name__) + "; give an ELF checkpoint_<step> file"


def read_checkpoint(path: Path) -> AuthorsCheckpoint:
    """Load and check the top level of an authors' checkpoint file (tensor names are checked later)."""
    path = Path(path)
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: not an ELF checkpoint in the authors' layout: the file holds a "
                          f"{type(obj).__name__}, expected a dict with 'params' and 'ema_params1'")
    if "params" not in obj:
        raise ConfigError(f"{path}: not an ELF checkpoint in the authors' layout: missing key 'params' (found "
                          f"{', '.join(map(str, list(obj)[:8])) or 'nothing'})")
    for key in ("params", "ema_params1"):
        if key in obj and not isinstance(obj[key], dict):
            raise ConfigError(f"{path}: not an ELF checkpoint in the authors' layout: '{key}' is a "
                              f"{type(obj[key]).__name__}, expected a state dict")
    step = obj.get("step", file_step(path))
    epoch = obj.get("epoch")
    return AuthorsCheckpoint(
        path=path, params=strip_wrapper_prefixes(obj["params"]),
        ema=strip_wrapper_prefixes(obj["ema_params1"]) if obj.get("ema_params1") else None,
        step=int(step) if isinstance(step, (int, float)) else 0,
        epoch=int(epoch) if isinstance(epoch, (int, float)) else None, entries=[str(k) for k in obj],
        carried=carried_config(obj, str(path)))

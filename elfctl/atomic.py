"""One way to write a file so that a crash, a kill or a full disk never leaves a torn file in its place.

Every writer of the project (checkpoints, latent caches, samples JSONL, eval results, configs) goes through
here: the content is written to a hidden temporary file beside the target, flushed and fsynced, renamed over
the target (atomic on POSIX), and the directory entry is fsynced. If anything fails before the rename, the
temporary file is removed and the previous file, if any, is untouched.

    atomic_write_text(path, text)            atomic_write_bytes(path, data)
    atomic_write_json(path, obj)             atomic_write_jsonl(path, rows)
    with atomic_open(path, "w") as f: ...    # stream into it; replaced only when the block ends cleanly
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort on filesystems that refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """The hidden temporary name a write to ``path`` goes through (unique per process)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces ``path``, on an exception it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def check_can_create_in(folder: Path, path: Path, flag: str) -> None:
    """One line naming ``flag`` unless ``path`` can be created under ``folder`` (its nearest existing ancestor must
    be a directory this process may write in): checked before any work, so a long job never fails at its write."""
    from elfctl.errors import ConfigError

    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag}: {folder} is a file, so {path} cannot be created under it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: cannot write in {folder} (permission denied)")

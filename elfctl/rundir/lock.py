"""One writer per run directory: the commands that write checkpoints (``train``, ``distill``) hold ``<run>/.lock``.

The lock is an exclusive ``flock`` on ``<run_dir>/.lock``, which also records the holder's pid, host and start
time. The kernel drops a ``flock`` when its process dies, however it dies, so a lock file left behind by a
killed run is not held: the next writer takes it over and says so in one log line. A second live writer gets
one :class:`~elfctl.errors.ConfigError` naming the holder's pid and host (exit 2).

On filesystems where ``flock`` is not shared between machines (some NFS setups) the recorded host lets a user
see who holds it; elfctl never deletes a lock file it does not hold.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional

from elfctl.errors import ConfigError

LOCK_NAME = ".lock"


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """``with RunLock(run_dir, log=print): ...`` — raises ConfigError if another live process holds it."""

    def __init__(self, run_dir: Path, *, command: str = "train", log: Callable[[str], None] = print):
        self.path = Path(run_dir) / LOCK_NAME
        self.command = command
        self.log = log
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ConfigError(
                    f"{self.path.parent} is in use by another elfctl {holder.get('command', 'process')} "
                    f"({_describe(holder)}); wait for it to finish, stop it, or pick another train.run_dir") from None
            # the holder may have released and unlinked the file between our open and our flock: retry on the
            # new file, else two processes could each hold a lock on a different inode
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd)
        if stale:
            self.log(f"taking over the lock of {self.path.parent} left by {_describe(stale)}, which is no longer "
                     f"running")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # unlink while still holding it: a waiting process re-checks the inode
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

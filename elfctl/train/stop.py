"""A graceful stop for training: SIGTERM (cluster preemption) or SIGINT (Ctrl-C) ends the run at a step boundary.

The first signal only sets a flag: the trainer finishes the current step, writes a checkpoint at that step and
raises :class:`TrainingStopped`, whose exit code is the shell's for that signal (143 for SIGTERM, 130 for
SIGINT). A second signal stops at once (KeyboardInterrupt for Ctrl-C, exit 143 for SIGTERM); the checkpoint
write is atomic, so even then nothing already saved is lost. Handlers are installed only in the main thread
and restored when the block ends.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional

from elfctl.errors import ElfError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(ElfError):
    """Training stopped on a signal after checkpointing; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class GracefulStop:
    """``with GracefulStop() as stop: ... if stop.requested(): ...``"""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: stop now
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        # os.write, not print: a handler may run in the middle of another write to stdout
        os.write(2, f"\n{signal.Signals(signum).name} received: finishing this step, then writing a checkpoint "
                    f"(send it again to stop at once)\n".encode())

    def requested(self, distributed: bool = False, device=None) -> bool:
        """Whether a stop was asked for; under torchrun on any rank (every rank must stop at the same step, so
        this costs one tiny all-reduce and a host sync: the trainer asks only on log and save steps there)."""
        if distributed:
            import torch
            import torch.distributed as dist

            t = torch.tensor([self.signum or 0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            if self.signum is None and int(t.item()):
                self.signum = int(t.item())
        return self.signum is not None

    def stopped(self, step: int, checkpoint) -> TrainingStopped:
        name = signal.Signals(self.signum).name
        return TrainingStopped(f"stopped by {name} after step {step}; checkpoint {checkpoint} written; run the same "
                               f"command to resume from it", self.signum)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()

"""Let glibc keep freed CPU memory for reuse instead of handing it back to the kernel after every step.

A CPU training step allocates and frees the same large tensors every time: on the quickstart recipe the
(rows, vocabulary) logits of the decode branch, their gradient and the vocabulary projection's gradient,
50-60 MB each. glibc serves blocks that large with ``mmap`` and unmaps them on ``free``, so every step pays
the page faults and the kernel's zero-filling again (measured: a fifth of a 2-core training step). Turning
``mmap`` off and raising the trim threshold makes freed blocks reusable from the heap; results are unchanged.

Linux with glibc only (elsewhere this does nothing); ``ELFCTL_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def keep_freed_memory() -> bool:
    """Apply the tuning once per process; returns whether it is in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("ELFCTL_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _applied = ok
    return ok

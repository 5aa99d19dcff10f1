"""Per-row noise streams of the sampler: a row's noise depends on (seed, row) only, never on its batch.

Two ways to draw the same kind of stream:

- CPU: one ``torch.Generator`` per row, seeded ``mix_seed(seed, 1, j)``; the starting noise is its first draw, the
  churn noise of step i the next ones. This is the stream elfctl has always used: CPU results do not change.
- CUDA: B generators would cost B kernel launches per draw. Instead a counter-based stream: element e of row j in
  draw d is a normal made from a hash of (row key j, d, e) for all rows at once, in a fixed handful of elementwise
  kernels whatever B is. Same per-row and batch-size invariance; different numbers than the CPU stream (as CUDA
  generators always gave).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

_MASK64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 chain): (seed, batch) pairs never collide the way seed·K + b can."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


_POOL = None


def row_randn(shape, generators: list, device) -> torch.Tensor:
    """fp32 N(0, 1) of ``shape`` (B, ...), row j drawn from ``generators[j]``.

    On the CPU, torch draws normals on one thread; rows have their own generators, so large draws are split over
    torch's intra-op thread count (same numbers, about half the time on two cores).
    """
    global _POOL
    out = torch.empty(shape, device=device, dtype=torch.float32)

    def draw(rows: range) -> None:
        for j in rows:
            torch.randn(out[j].shape, generator=generators[j], device=device, dtype=torch.float32, out=out[j])

    workers = min(torch.get_num_threads(), len(generators))
    if torch.device(device).type != "cpu" or workers < 2 or out.numel() < (1 << 16):
        draw(range(len(generators)))
        return out
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="elf-noise")
    list(_POOL.map(draw, [range(k, len(generators), workers) for k in range(workers)]))
    return out


def _hash32(x):
    """A 32-bit integer mix (xorshift-multiply, constants below 2^31 so int64 products never overflow); the same
    on int64 tensors and Python ints."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


def counter_randn(row_keys: torch.Tensor, draw: int, per_row: int) -> torch.Tensor:
    """(B, per_row) fp32 N(0, 1): element e of row j is a function of (row_keys[j], draw, e) only.

    Box–Muller on two 24-bit uniforms, each from hashing the 64-bit counter 2e (+1) under the row's 63-bit key
    and the draw index. All rows in one set of elementwise kernels.
    """
    dev = row_keys.device
    k_lo, k_hi = (row_keys & _M32)[:, None], (row_keys >> 32)[:, None]
    base = _hash32(_hash32(k_lo ^ _hash32(draw & _M32)) ^ k_hi)  # (B, 1); the draw's hash is a host scalar
    c = torch.arange(per_row, device=dev, dtype=torch.int64) * 2
    c_hi = c >> 32

    def uniform(ctr: torch.Tensor) -> torch.Tensor:
        h = _hash32(_hash32(base ^ (ctr & _M32)) ^ c_hi)
        return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # in (0, 1), never 0

    u1, u2 = uniform(c), uniform(c + 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


class RowNoise:
    """The noise of one draw of B rows: :meth:`draw` returns the next (B, ...) block of every row's stream."""

    def __init__(self, seed: int, batch: int, device, *, counter: Optional[bool] = None):
        self.device = torch.device(device)
        keys = [mix_seed(seed, 1, j) for j in range(batch)]
        self.counter = self.device.type == "cuda" if counter is None else counter  # CUDA: one launch set per draw
        self.draws = 0
        if self.counter:
            self.keys = torch.tensor(keys, dtype=torch.int64, device=self.device)
        else:
            self.generators = [torch.Generator(device=self.device).manual_seed(k) for k in keys]

    def draw(self, shape) -> torch.Tensor:
        if self.counter:
            per_row = math.prod(shape[1:])
            out = counter_randn(self.keys, self.draws, per_row).reshape(shape)
        else:
            out = row_randn(shape, self.generators, self.device)
        self.draws += 1
        return out

"""Which examples and which random seed each (step, shard) gets — a pure function, so resume is exact.

The training stream is the concatenation of per-epoch permutations of the dataset (epoch e is shuffled by
``seed + e``). Optimizer step s consumes stream positions [s·B, (s+1)·B); that global batch is cut into
``world_size × grad_accum`` equal shards, shard j = rank·grad_accum + micro-step. The randomness of a shard
(times, noise, branches, dropout) is drawn from torch's RNG seeded by (seed, s, j). One process with
grad_accum = k therefore computes exactly what k processes with grad_accum = 1 compute, and a run resumed at
step s reproduces the uninterrupted run: nothing but the step number needs saving.
"""

from __future__ import annotations

import torch

_MIX = 0x9E3779B97F4A7C15


def shard_seed(seed: int, step: int, shard: int) -> int:
    """A 63-bit seed that differs for every (seed, step, shard)."""
    h = (seed * 1_000_003 + step) * 1_000_033 + shard
    h = (h ^ (h >> 29)) * _MIX & (2**64 - 1)
    return (h ^ (h >> 32)) & (2**63 - 1)


class BatchOrder:
    def __init__(self, num_examples: int, global_batch: int, num_shards: int, seed: int):
        if num_examples < 1:
            raise ValueError("the training set is empty")
        if global_batch % num_shards:
            raise ValueError(f"global batch {global_batch} is not divisible into {num_shards} shards")
        self.n = num_examples
        self.global_batch = global_batch
        self.shard_size = global_batch // num_shards
        self.seed = seed
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, step: int, shard: int) -> list[int]:
        """Dataset indices of shard ``shard`` of optimizer step ``step``."""
        start = step * self.global_batch + shard * self.shard_size
        out = []
        for pos in range(start, start + self.shard_size):
            out.append(int(self._permutation(pos // self.n)[pos % self.n]))
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.global_batch / self.n


class ShardBatches:
    """The index lists one rank consumes, in training order: for each step from ``start`` to ``stop``, its
    ``grad_accum`` micro-step shards. A DataLoader ``batch_sampler``: batches come back in this order whatever
    the number of workers, so runs with and without workers (and resumed runs) see the same examples."""

    def __init__(self, order: BatchOrder, start: int, stop: int, rank: int, grad_accum: int):
        self.order, self.start, self.stop, self.rank, self.accum = order, start, stop, rank, grad_accum

    def __iter__(self):
        for step in range(self.start, self.stop):
            for micro in range(self.accum):
                yield self.order.indices(step, self.rank * self.accum + micro)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.accum

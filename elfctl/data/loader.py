"""The training input pipeline: a torch DataLoader over the map-style training set, in the exact step order.

Batches are cut by :class:`~elfctl.data.order.ShardBatches` (the pure (step, shard) -> indices function of
``elfctl.data.order``), read and collated by ``data.num_workers`` worker processes (0: in the training
process), ``data.prefetch_factor`` batches ahead per worker, in pinned memory when training on CUDA. The
workers only read and stack memory-mapped rows; every random draw of a step stays in the training process, so
the loss sequence does not depend on the number of workers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, default_collate

from elfctl.data.order import BatchOrder, ShardBatches

TRAINING_KEYS = ("input_ids", "attention_mask", "cond_mask", "latents")


def collate_training(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack the fields training uses (a latent cache adds ``latents``)."""
    return default_collate([{k: v for k, v in it.items() if k in TRAINING_KEYS} for it in items])


def training_loader(dataset, order: BatchOrder, *, start: int, stop: int, rank: int, grad_accum: int,
                    num_workers: int = 0, prefetch_factor: int = 2, pin_memory: bool = False) -> DataLoader:
    workers = num_workers > 0
    return DataLoader(dataset, batch_sampler=ShardBatches(order, start, stop, rank, grad_accum),
                      collate_fn=collate_training, num_workers=num_workers, pin_memory=pin_memory,
                      prefetch_factor=prefetch_factor if workers else None, persistent_workers=workers)


def device_batches(loader: DataLoader, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches on the training device (asynchronous copies from pinned memory)."""
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}

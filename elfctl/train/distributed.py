"""torchrun integration: process group and ranks (the device choice itself: ``elfctl.rundir.device``).

``torchrun --nproc_per_node N -m elfctl train RECIPE`` sets RANK / WORLD_SIZE / LOCAL_RANK; we then use
DistributedDataParallel, or FSDP2 with ``train.fsdp=true`` (``elfctl.train.fsdp``); NCCL on GPUs, gloo on
CPUs. A plain ``elfctl train`` is world size 1.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from elfctl.rundir.device import pick_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


DEFAULT_TIMEOUT_MIN = 120.0


def init_distributed(device_spec: str, timeout_min: float = DEFAULT_TIMEOUT_MIN) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if one is described by the environment.

    ``timeout_min`` (``train.dist_timeout_min``) is how long a collective may wait: rank 0 prepares the data
    (downloads, tokenization, the latent cache) while the other ranks wait at a barrier, which NCCL's default
    (10 minutes) would kill on a large set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), pick_device(device_spec)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec, local, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_min),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistInfo(rank, world, local), device


def shutdown_distributed(barrier: bool = True) -> None:
    """Leave the process group (after a barrier on success; without one after an error, so no rank hangs)."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t

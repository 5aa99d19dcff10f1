"""torchrun integration: process group, ranks, device choice.

``torchrun --nproc_per_node N -m elfctl train RECIPE`` sets RANK / WORLD_SIZE / LOCAL_RANK; we then use
DistributedDataParallel, or FSDP2 with ``train.fsdp=true`` (``elfctl.train.fsdp``); NCCL on GPUs, gloo on
CPUs. A plain ``elfctl train`` is world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from elfctl.errors import ConfigError


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


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: '{spec}' asked for, but no CUDA device is available; use auto or cpu")
    if spec not in ("cpu",) and not spec.startswith("cuda"):
        raise ConfigError(f"train.device: '{spec}' is not valid; use auto, cpu, cuda or cuda:N")
    return torch.device(spec)


def init_distributed(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if one is described by the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), pick_device(device_spec)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
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

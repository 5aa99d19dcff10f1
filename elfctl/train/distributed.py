"""torchrun integration: process group, ranks, device choice.

``torchrun --nproc_per_node N -m elfctl train RECIPE`` sets RANK / WORLD_SIZE / LOCAL_RANK; we then use
DistributedDataParallel, or FSDP2 with ``train.fsdp=true`` (``elfctl.train.fsdp``); NCCL on GPUs, gloo on
CPUs. A plain ``elfctl train`` is world size 1.
"""

from __future__ import annotations

import datetime
import os
import re
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


def pick_device(spec: str, local_rank: int = 0, world_size: int = 1, *, what: str = "train.device") -> torch.device:
    """The device named by ``spec`` (auto, cpu, cuda, cuda:N) for the process with ``local_rank``.

    Under torchrun (``world_size`` > 1) every rank must own its own GPU: ``auto`` and ``cuda`` both mean
    ``cuda:{local_rank}``; a fixed ``cuda:N`` would put every rank on GPU N (NCCL refuses duplicate GPUs or
    hangs), so it is refused. ``cuda`` always gets an explicit index, so code that launches on the tensor's
    device (the Triton kernels, DDP's ``device_ids``) never falls back to the current device.
    """
    spec = spec.strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    if spec != "cuda" and not re.fullmatch(r"cuda:\d+", spec):
        raise ConfigError(f"{what}: '{spec}' is not valid; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"{what}: '{spec}' asked for, but no CUDA device is available; use auto or cpu")
    if spec == "cuda":
        index = local_rank
    elif world_size > 1:
        raise ConfigError(f"{what}: '{spec}' would put all {world_size} torchrun ranks on one GPU; use "
                          f"{what}=cuda (or auto): rank r then uses cuda:LOCAL_RANK (choose GPUs with "
                          f"CUDA_VISIBLE_DEVICES)")
    else:
        index = int(spec.split(":")[1])
    count = torch.cuda.device_count()
    if index >= count:
        who = f"LOCAL_RANK {local_rank}" if spec == "cuda" else f"'{spec}'"
        raise ConfigError(f"{what}: {who} needs GPU {index}, but this machine shows {count} (0..{count - 1}); "
                          f"launch at most {count} processes per node or pick an existing GPU")
    return torch.device("cuda", index)


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

"""Which device a command runs on: ``train.device`` / ``sample.device`` / ``--device`` (auto, cpu, cuda, cuda:N).

Every command picks its device here, the training ranks under torchrun included (``elfctl.train.distributed``).
"""

from __future__ import annotations

import re

import torch

from elfctl.errors import ConfigError


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

"""Which arithmetic sampling runs in, decided in one place and recorded in the samples header.

CUDA: bf16 autocast for the network when ``sample.bf16`` (the authors sample so; the network keeps its input
projections and heads in fp32), and TF32 for the matmuls and convolutions left in fp32. CPU: fp32 throughout,
``sample.bf16`` is ignored there.
"""

from __future__ import annotations

from typing import Optional

import torch


def autocast_dtype(device: torch.device | str, bf16: bool) -> Optional[torch.dtype]:
    """torch.bfloat16 on CUDA with ``bf16``; None (no autocast) otherwise."""
    return torch.bfloat16 if bf16 and torch.device(device).type == "cuda" else None


def precision_label(device: torch.device | str, bf16: bool) -> str:
    """What the header says ran: ``bf16-autocast+tf32`` / ``fp32+tf32`` on CUDA, ``fp32`` elsewhere."""
    if torch.device(device).type != "cuda":
        return "fp32"
    return ("bf16-autocast" if autocast_dtype(device, bf16) is not None else "fp32") + "+tf32"


def enable_tf32(device: torch.device | str) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (the new per-backend API; never mixed with the legacy one)."""
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"

"""Sampling's view of the one precision policy (``elfctl.precision``): the autocast dtype, the header's label,
and applying it before a sampler runs."""

from __future__ import annotations

from typing import Optional

import torch

from elfctl.precision import apply, policy


def autocast_dtype(device: torch.device | str, bf16: bool) -> Optional[torch.dtype]:
    """torch.bfloat16 on CUDA with ``bf16``; None (no autocast) otherwise."""
    return policy(device, bf16).autocast_dtype


def precision_label(device: torch.device | str, bf16: bool) -> str:
    """What the header says ran: ``bf16-autocast+tf32`` / ``fp32+tf32`` on CUDA, ``fp32`` elsewhere."""
    return policy(device, bf16).label


def apply_precision(device: torch.device | str, bf16: bool) -> str:
    """Apply the policy for sampling on ``device``; returns its label."""
    return apply(policy(device, bf16)).label

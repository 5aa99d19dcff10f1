"""Choosing Triton or the PyTorch reference for each call.

``ELFCTL_KERNELS=auto`` (default): Triton for CUDA tensors when Triton imports, the reference otherwise.
``triton`` forces Triton (on the CPU only under ``TRITON_INTERPRET=1``); ``torch`` forces the reference.
Forcing Triton where it cannot run is one clear error giving the reason.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from elfctl.errors import ConfigError

VALID = ("auto", "triton", "torch")

try:  # guarded once: elfctl works without Triton (macOS, Windows, CPU-only installs)
    import triton  # noqa: F401

    TRITON_IMPORT_ERROR: Optional[str] = None
except Exception as e:  # noqa: BLE001
    TRITON_IMPORT_ERROR = f"{type(e).__name__}: {e}"


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_refusal(tensor: torch.Tensor) -> Optional[str]:
    """Why Triton cannot run on this tensor, or None when it can."""
    if TRITON_IMPORT_ERROR is not None:
        return f"triton is not importable ({TRITON_IMPORT_ERROR})"
    if tensor.device.type == "cuda":
        return None
    if interpreted():
        return None
    return f"the tensor is on {tensor.device.type} and Triton runs on CUDA (or on the CPU with TRITON_INTERPRET=1)"


def resolve_backend(tensor: torch.Tensor, requested: Optional[str] = None) -> str:
    """'triton' or 'torch' for this tensor, from ``requested`` or $ELFCTL_KERNELS."""
    choice = (requested or os.environ.get("ELFCTL_KERNELS") or "auto").strip().lower()
    if choice not in VALID:
        raise ConfigError(f"ELFCTL_KERNELS: {choice!r} is not valid; choose one of {', '.join(VALID)}")
    if choice == "torch":
        return "torch"
    refusal = triton_refusal(tensor)
    if choice == "triton":
        if refusal:
            raise ConfigError(f"ELFCTL_KERNELS=triton cannot run here: {refusal}; use ELFCTL_KERNELS=auto or torch")
        return "triton"
    return "triton" if refusal is None and tensor.device.type == "cuda" else "torch"

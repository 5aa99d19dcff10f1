"""Choosing Triton or the PyTorch reference for each call, and the input checks both backends share.

``ELFCTL_KERNELS=auto`` (default): Triton for CUDA tensors when Triton imports, the reference otherwise.
``triton`` forces Triton (on the CPU only under ``TRITON_INTERPRET=1``); ``torch`` forces the reference.
Forcing Triton where it cannot run is one clear ConfigError giving the reason.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from elfctl.errors import ConfigError

VALID = ("auto", "triton", "torch")
ENV_VAR = "ELFCTL_KERNELS"

_UNTRIED = object()
_triton_import_error: object = _UNTRIED


def triton_import_error() -> Optional[str]:
    """None when Triton imports, else a one-line reason. The guarded import runs once, on first need.

    It is deferred rather than done when ``elfctl.kernels`` loads because Triton decides at *its* import whether its
    own device functions (``tl.randn``) are interpreted: importing it early would fix that choice before a test or
    script had the chance to set ``TRITON_INTERPRET=1``. elfctl works without Triton (macOS, Windows, CPU installs).
    """
    global _triton_import_error
    if _triton_import_error is _UNTRIED:
        try:
            import triton  # noqa: F401

            _triton_import_error = None
        except Exception as e:  # noqa: BLE001 - any failure to import means "no Triton"
            _triton_import_error = f"{type(e).__name__}: {e}".splitlines()[0]
    return _triton_import_error  # type: ignore[return-value]


def interpreted() -> bool:
    """Whether TRITON_INTERPRET asks for the Triton CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in ("", "0", "false", "no", "off")


def _triton_library_interpreted() -> bool:
    """Triton decorates its own device functions (tl.randn, ...) at import: interpreted only if the flag was set."""
    import triton.language as tl

    return type(tl.randn).__name__ == "InterpretedFunction"


def triton_refusal(tensor: torch.Tensor) -> Optional[str]:
    """Why Triton cannot run on this tensor, or None when it can."""
    error = triton_import_error()
    if error is not None:
        return f"triton is not importable ({error})"
    if tensor.device.type == "cuda":
        return None
    if interpreted():
        if not _triton_library_interpreted():
            return ("TRITON_INTERPRET=1 was set after triton was imported, so Triton cannot interpret kernels on "
                    f"{tensor.device.type}; set it before triton is imported (e.g. in the environment)")
        return None
    return (f"the tensor is on {tensor.device.type} and Triton runs on CUDA "
            "(or on the CPU with TRITON_INTERPRET=1)")


def requested_backend(requested: Optional[str] = None) -> str:
    """The validated choice: ``requested``, else $ELFCTL_KERNELS, else 'auto'."""
    raw = requested if requested is not None else os.environ.get(ENV_VAR, "")
    choice = (raw or "auto").strip().lower()
    if choice not in VALID:
        raise ConfigError(f"{ENV_VAR}: {raw!r} is not valid; choose one of {', '.join(VALID)}")
    return choice


def resolve_backend(tensor: torch.Tensor, requested: Optional[str] = None) -> str:
    """'triton' or 'torch' for this tensor, from ``requested`` or $ELFCTL_KERNELS (default auto)."""
    choice = requested_backend(requested)
    if choice == "torch" or (choice == "auto" and tensor.device.type != "cuda"):
        return "torch"  # without touching Triton at all
    refusal = triton_refusal(tensor)
    if choice == "triton":
        if refusal:
            raise ConfigError(f"{ENV_VAR}=triton cannot run here: {refusal}; use {ENV_VAR}=auto or torch")
        return "triton"
    return "triton" if refusal is None else "torch"


def check_launchable(kernel, tensor: torch.Tensor) -> None:
    """Triton decides at decoration time whether a kernel is interpreted: refuse a CPU launch of a compiled one."""
    if tensor.device.type != "cuda" and type(kernel).__name__ != "InterpretedFunction":
        raise ConfigError("the Triton kernels were loaded before TRITON_INTERPRET=1 was set, so they cannot run on "
                          f"{tensor.device.type}; set TRITON_INTERPRET=1 before the first kernel call")


def check_inputs(z: torch.Tensor, others: dict, cond_latents: Optional[torch.Tensor],
                 cond_mask: Optional[torch.Tensor]) -> None:
    """Shape checks shared by both backends (programming errors: ValueError)."""
    if z.dim() < 1:
        raise ValueError("z must have at least one (channel) dimension")
    for name, t in others.items():
        if t is not None and t.shape != z.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, z has {tuple(z.shape)}")
    if cond_mask is None:
        return
    if cond_latents is None:
        raise ValueError("cond_mask was given without cond_latents")
    try:
        ok = (torch.broadcast_shapes(cond_mask.shape, z.shape[:-1]) == z.shape[:-1]
              and torch.broadcast_shapes(cond_latents.shape, z.shape) == z.shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"cond_mask {tuple(cond_mask.shape)} / cond_latents {tuple(cond_latents.shape)} do not "
                         f"broadcast to {tuple(z.shape[:-1])} / {tuple(z.shape)}")


def dense_condition(z: torch.Tensor, cond_latents: Optional[torch.Tensor], cond_mask: Optional[torch.Tensor]):
    """(latents, int8 mask) expanded to z's shape and contiguous, for the flat-indexed kernels; None when absent."""
    if cond_mask is None:
        return None, None
    if cond_mask.dtype == torch.bool:  # the common case: reinterpret the bytes, no conversion kernel
        mask = cond_mask.expand(z.shape[:-1]).contiguous().view(torch.int8)
    else:
        mask = (cond_mask != 0).expand(z.shape[:-1]).contiguous().view(torch.int8)
    lat = cond_latents.expand(z.shape).contiguous()
    return lat, mask

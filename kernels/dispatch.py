"""Choosing Triton or the PyTorch reference for each call, launching it, and the input checks both backends share.

``ELFCTL_KERNELS=auto`` (default): Triton for CUDA tensors when Triton imports *and* a probe launch works on that
device, the reference otherwise. The probe (:func:`probe`) runs once per (device, dtype): both kernels on a tiny
input, compared with the references. If Triton cannot run there (no host compiler for its launcher, an old
driver or ptxas, bf16 on a pre-sm80 GPU, ``TRITON_INTERPRET=1`` set on a GPU machine, ...), ``auto`` prints one
warning line and uses the reference from then on; a later launch that fails under ``auto`` does the same.
``triton`` forces Triton (on the CPU only under ``TRITON_INTERPRET=1``): no probe, and a failing launch is one
clear ElfRuntimeError. ``torch`` forces the reference. Kernels are launched under the tensors' CUDA device, so
Triton uses that device and its current stream, not whichever device happens to be current.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Optional, TypeVar

import torch

from elfctl.errors import ConfigError, ElfRuntimeError

R = TypeVar("R")
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


def triton_refusal(tensor: torch.Tensor | torch.device) -> Optional[str]:
    """Why Triton cannot run on this tensor (or device), or None when it can."""
    device = tensor if isinstance(tensor, torch.device) else tensor.device
    error = triton_import_error()
    if error is not None:
        return f"triton is not importable ({error})"
    if device.type == "cuda":
        if interpreted() or _triton_library_interpreted():
            # The interpreter would copy every CUDA tensor to the host and back, silently and very slowly.
            return ("TRITON_INTERPRET=1 is set, so Triton would run its CPU interpreter on CUDA tensors; unset it "
                    "to compile the kernels for the GPU")
        return None
    if interpreted():
        if not _triton_library_interpreted():
            return ("TRITON_INTERPRET=1 was set after triton was imported, so Triton cannot interpret kernels on "
                    f"{device.type}; set it before triton is imported (e.g. in the environment)")
        return None
    return (f"the tensor is on {device.type} and Triton runs on CUDA "
            "(or on the CPU with TRITON_INTERPRET=1)")


def requested_backend(requested: Optional[str] = None) -> str:
    """The validated choice: ``requested``, else $ELFCTL_KERNELS, else 'auto'."""
    raw = requested if requested is not None else os.environ.get(ENV_VAR, "")
    choice = (raw or "auto").strip().lower()
    if choice not in VALID:
        raise ConfigError(f"{ENV_VAR}: {raw!r} is not valid; choose one of {', '.join(VALID)}")
    return choice


def _auto_candidate(device: torch.device) -> bool:
    """Whether ``auto`` considers Triton for tensors on ``device`` at all (tests widen this to the interpreter)."""
    return device.type == "cuda"


# (device, dtype) -> None when Triton works there, else the reason it does not (probed or failed under auto)
_device_state: dict[tuple[str, Optional[int], torch.dtype], Optional[str]] = {}


def _key(device: torch.device, dtype: torch.dtype) -> tuple[str, Optional[int], torch.dtype]:
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device.type, device.index, dtype


def _fall_back(key, reason: str) -> None:
    """Remember that Triton does not work for ``key`` and say so once, in one line."""
    if _device_state.get(key, None) is None:
        where = f"{key[0]}:{key[1]}" if key[1] is not None else key[0]
        print(f"warning: Triton kernels unavailable on {where} ({str(key[2]).replace('torch.', '')}): {reason}; "
              f"using the PyTorch reference ({ENV_VAR}=torch skips this check)", file=sys.stderr, flush=True)
    _device_state[key] = reason


def reset_probes() -> None:
    """Forget every probe result (tests; or after fixing the environment in a long-lived process)."""
    _device_state.clear()


def probe(device: torch.device, dtype: torch.dtype = torch.float32) -> Optional[str]:
    """Launch both kernels once on a tiny input on ``device`` and compare them with the references.

    Returns None when they work, else a one-line reason (the exception, or a mismatch). Compiles the kernels
    for this device and dtype as a side effect (cached by Triton on disk).
    """
    from .reference import guidance_step_ref, sde_noise_inject_ref

    try:
        from .triton_guidance import guidance_step_triton
        from .triton_sde_noise import sde_noise_inject_triton

        gen = torch.Generator().manual_seed(0)
        xc, xu, z, cl = (torch.randn(2, 3, 8, generator=gen).to(device=device, dtype=dtype) for _ in range(4))
        cm = torch.tensor([[True, False, False], [False, False, True]], device=device)
        step = dict(scale=2.0, t=0.3, t_next=0.4, t_eps=0.05, cond_latents=cl, cond_mask=cm)
        with launch_context(device):
            got = guidance_step_triton(xc, xu, z, **step)
            out, eps = sde_noise_inject_triton(z, alpha=0.8, noise_scale=1.0, seed=1, offset=2**33, cond_latents=cl,
                                               cond_mask=cm, return_noise=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # an asynchronous launch error surfaces here, not later
        want = (*guidance_step_ref(xc, xu, z, **step),
                sde_noise_inject_ref(z, alpha=0.8, noise_scale=1.0, noise=eps, cond_latents=cl, cond_mask=cm))
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        for g, w in zip((*got, out), want):
            if not torch.allclose(g.float(), w.float(), rtol=tol, atol=tol):
                return "the probe launch disagrees with the PyTorch reference"
        if not bool(torch.isfinite(eps).all()):
            return "the in-kernel noise is not finite"
    except Exception as e:  # noqa: BLE001 - whatever stops a launch means "Triton does not work here"
        return _first_line(e)
    return None


def resolve_backend(tensor: torch.Tensor, requested: Optional[str] = None) -> str:
    """'triton' or 'torch' for this tensor, from ``requested`` or $ELFCTL_KERNELS (default auto).

    Under ``auto`` the first call for a CUDA device and dtype runs :func:`probe` (once, remembered).
    """
    choice = requested_backend(requested)
    if choice == "torch" or (choice == "auto" and not _auto_candidate(tensor.device)):
        return "torch"  # without touching Triton at all
    refusal = triton_refusal(tensor)
    if choice == "triton":
        if refusal:
            raise ConfigError(f"{ENV_VAR}=triton cannot run here: {refusal}; use {ENV_VAR}=auto or torch")
        return "triton"
    key = _key(tensor.device, tensor.dtype)
    if key not in _device_state:
        reason = refusal if refusal is not None else probe(tensor.device, tensor.dtype)
        if reason is None:
            _device_state[key] = None
        else:
            _fall_back(key, reason)
    return "torch" if _device_state[key] is not None else "triton"


def launch_context(device: torch.device):
    """Make ``device`` current for a Triton launch: Triton launches on the current device and its current stream."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def launch(name: str, z: torch.Tensor, requested: Optional[str], triton_call: Callable[[], R],
           reference_call: Callable[[], R]) -> R:
    """Run ``triton_call`` under z's device. A failure is one ElfRuntimeError when Triton was forced; under
    ``auto`` it is one warning line and the reference (for this call and every later one on the device)."""
    try:
        with launch_context(z.device):
            return triton_call()
    except (ValueError, ConfigError, torch.OutOfMemoryError):
        raise  # the caller's inputs, setup or memory: the same error whichever backend runs
    except Exception as e:  # noqa: BLE001 - a launch failure
        reason = f"the {name} launch failed ({_first_line(e)})"
        if requested_backend(requested) == "triton":
            raise ElfRuntimeError(f"{ENV_VAR}=triton: {reason} on {z.device}; use {ENV_VAR}=auto (falls back to "
                                  f"the PyTorch reference) or {ENV_VAR}=torch") from e
        _fall_back(_key(z.device, z.dtype), reason)
        return reference_call()


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def check_launchable(kernel, tensor: torch.Tensor) -> None:
    """Triton decides at decoration time whether a kernel is interpreted: refuse a CPU launch of a compiled kernel,
    and a CUDA launch of an interpreted one (it would copy the tensors to the host and back, silently)."""
    is_interpreted = type(kernel).__name__ == "InterpretedFunction"
    if tensor.device.type != "cuda" and not is_interpreted:
        raise ConfigError("the Triton kernels were loaded before TRITON_INTERPRET=1 was set, so they cannot run on "
                          f"{tensor.device.type}; set TRITON_INTERPRET=1 before the first kernel call")
    if tensor.device.type == "cuda" and is_interpreted:
        raise ConfigError("the Triton kernels were loaded with TRITON_INTERPRET=1, so on CUDA tensors they would run "
                          "in the CPU interpreter; unset TRITON_INTERPRET (or use ELFCTL_KERNELS=torch)")


def check_inputs(z: torch.Tensor, others: dict, cond_latents: Optional[torch.Tensor],
                 cond_mask: Optional[torch.Tensor]) -> None:
    """Shape checks shared by both backends (programming errors: ValueError)."""
    if z.dim() < 1:
        raise ValueError("z must have at least one (channel) dimension")
    for name, t in others.items():
        if t is not None and t.shape != z.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, z has {tuple(z.shape)}")
    # a kernel reads raw pointers: every input must live on z's device (the reference would fail later anyway)
    for name, t in {**others, "cond_latents": cond_latents, "cond_mask": cond_mask}.items():
        if t is not None and t.device != z.device:
            raise ValueError(f"{name} is on {t.device}, z is on {z.device}")
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

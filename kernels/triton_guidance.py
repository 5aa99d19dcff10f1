"""Triton kernel: guidance combine + velocity + Euler step + condition restore in one pass over (B, L, C).

Reads x_cond, x_uncond (optional), z, the (B, L) condition mask (optional) and the condition latents only where
the mask is on; writes z_next, and x unless it is x_cond itself (no CFG and no condition: x_cond is returned).
Every value is computed in fp32 and stored in z's dtype. Inputs are flattened after ``.contiguous()`` (a no-op
for the usual contiguous sampler tensors), so any stride pattern and any shape (B, L, C) works.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .dispatch import check_launchable, dense_condition

BLOCK = 1024
INT32_LIMIT = 2**31 - 1


@triton.jit
def _guidance_step_kernel(xc_ptr, xu_ptr, z_ptr, cl_ptr, cm_ptr, z_out_ptr, x_out_ptr, n, C, scale, denom, dt,
                          HAS_UNCOND: tl.constexpr, HAS_COND: tl.constexpr, WRITE_X: tl.constexpr,
                          INDEX_64: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    if INDEX_64:
        offs = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    else:
        offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    live = offs < n
    x = tl.load(xc_ptr + offs, mask=live, other=0.0).to(tl.float32)
    if HAS_UNCOND:
        xu = tl.load(xu_ptr + offs, mask=live, other=0.0).to(tl.float32)
        x = xu + scale * (x - xu)
    z = tl.load(z_ptr + offs, mask=live, other=0.0).to(tl.float32)
    v = (x - z) / denom
    z_next = z + dt * v
    if HAS_COND:
        is_cond = tl.load(cm_ptr + offs // C, mask=live, other=0) != 0
        c = tl.load(cl_ptr + offs, mask=live & is_cond, other=0.0).to(tl.float32)  # read only where it is used
        # v = 0 at condition positions: the state is pinned to the condition, and so is the prediction
        x = tl.where(is_cond, c, x)
        z_next = tl.where(is_cond, c, z_next)
    tl.store(z_out_ptr + offs, z_next.to(z_out_ptr.dtype.element_ty), mask=live)
    if WRITE_X:
        tl.store(x_out_ptr + offs, x.to(x_out_ptr.dtype.element_ty), mask=live)


def guidance_step_triton(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float,
                         t: float, t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                         cond_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_next, x) from the Triton kernel; same contract as ``reference.guidance_step_ref``."""
    check_launchable(_guidance_step_kernel, z)
    zc = z.contiguous()
    xc = x_cond.contiguous()
    xu = x_uncond.contiguous() if x_uncond is not None else xc
    cl, cm = dense_condition(zc, cond_latents, cond_mask)
    has_cond = cm is not None
    # no CFG and no condition: the prediction is x_cond itself, returned instead of copied
    write_x = x_uncond is not None or has_cond or xc.dtype != zc.dtype
    z_out = torch.empty_like(zc)
    x_out = torch.empty_like(zc) if write_x else xc
    n = zc.numel()
    if n:
        grid = (triton.cdiv(n, BLOCK),)
        _guidance_step_kernel[grid](
            xc, xu, zc, cl if has_cond else zc, cm if has_cond else zc, z_out, x_out, n, zc.shape[-1],
            float(scale), float(max(1.0 - t, t_eps)), float(t_next - t),
            HAS_UNCOND=x_uncond is not None, HAS_COND=has_cond, WRITE_X=write_x, INDEX_64=n + BLOCK > INT32_LIMIT,
            BLOCK_SIZE=BLOCK)
    return z_out, x_out

"""Triton kernel: guidance combine + velocity + Euler step + condition restore in one pass over (B, L, C).

Reads x_cond, x_uncond (optional), z, the condition latents and mask (optional); writes z_next and x.
Every value is computed in fp32 and stored in the output dtype. Inputs are made contiguous first.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _guidance_step_kernel(xc_ptr, xu_ptr, z_ptr, cl_ptr, cm_ptr, z_out_ptr, x_out_ptr, n, C, scale, denom, dt,
                          HAS_UNCOND: tl.constexpr, HAS_COND: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    live = offs < n
    x = tl.load(xc_ptr + offs, mask=live, other=0.0).to(tl.float32)
    if HAS_UNCOND:
        xu = tl.load(xu_ptr + offs, mask=live, other=0.0).to(tl.float32)
        x = xu + scale * (x - xu)
    z = tl.load(z_ptr + offs, mask=live, other=0.0).to(tl.float32)
    z_next = z + dt * ((x - z) / denom)
    if HAS_COND:
        is_cond = tl.load(cm_ptr + offs // C, mask=live, other=0) != 0
        c = tl.load(cl_ptr + offs, mask=live, other=0.0).to(tl.float32)
        x = tl.where(is_cond, c, x)
        z_next = tl.where(is_cond, c, z_next)
    tl.store(z_out_ptr + offs, z_next.to(z_out_ptr.dtype.element_ty), mask=live)
    tl.store(x_out_ptr + offs, x.to(x_out_ptr.dtype.element_ty), mask=live)


def guidance_step_triton(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float,
                         t: float, t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                         cond_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    zc = z.contiguous()
    xc = x_cond.contiguous()
    xu = x_uncond.contiguous() if x_uncond is not None else xc
    has_cond = cond_mask is not None
    cl = cond_latents.contiguous() if has_cond else xc
    cm = cond_mask.to(torch.int8).contiguous() if has_cond else torch.empty(1, dtype=torch.int8, device=z.device)
    z_out = torch.empty_like(zc)
    x_out = torch.empty_like(zc)
    n = zc.numel()
    if n:
        grid = (triton.cdiv(n, BLOCK),)
        _guidance_step_kernel[grid](xc, xu, zc, cl, cm, z_out, x_out, n, zc.shape[-1], float(scale),
                                    max(1.0 - t, t_eps), float(t_next - t), HAS_UNCOND=x_uncond is not None,
                                    HAS_COND=has_cond, BLOCK_SIZE=BLOCK)
    return z_out, x_out

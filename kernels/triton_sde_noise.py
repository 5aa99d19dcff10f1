"""Triton kernel: SDE noise injection z_b = α·z + (1 − α)·s·ε with ε drawn in-kernel (Philox, ``tl.randn``).

Element i draws from counter ``offset + i`` of stream ``seed``: no noise tensor is ever materialised, and the
same (seed, offset) gives the same noise. ``return_noise=True`` also writes ε out (for tests).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _sde_noise_kernel(z_ptr, cl_ptr, cm_ptr, out_ptr, eps_ptr, n, C, seed, offset, alpha, noise_scale,
                      HAS_COND: tl.constexpr, WRITE_NOISE: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    live = offs < n
    eps = tl.randn(seed, offset + offs)
    z = tl.load(z_ptr + offs, mask=live, other=0.0).to(tl.float32)
    zb = alpha * z + (1.0 - alpha) * noise_scale * eps
    if HAS_COND:
        is_cond = tl.load(cm_ptr + offs // C, mask=live, other=0) != 0
        c = tl.load(cl_ptr + offs, mask=live, other=0.0).to(tl.float32)
        zb = tl.where(is_cond, c, zb)
    tl.store(out_ptr + offs, zb.to(out_ptr.dtype.element_ty), mask=live)
    if WRITE_NOISE:
        tl.store(eps_ptr + offs, eps, mask=live)


def sde_noise_inject_triton(z: torch.Tensor, *, alpha: float, noise_scale: float, seed: int, offset: int,
                            cond_latents: Optional[torch.Tensor] = None, cond_mask: Optional[torch.Tensor] = None,
                            return_noise: bool = False):
    zc = z.contiguous()
    has_cond = cond_mask is not None
    cl = cond_latents.contiguous() if has_cond else zc
    cm = cond_mask.to(torch.int8).contiguous() if has_cond else torch.empty(1, dtype=torch.int8, device=z.device)
    out = torch.empty_like(zc)
    eps = torch.empty(zc.shape, dtype=torch.float32, device=z.device) if return_noise else out
    n = zc.numel()
    if n:
        grid = (triton.cdiv(n, BLOCK),)
        # Philox takes 32-bit seeds and offsets: fold larger values into range deterministically.
        _sde_noise_kernel[grid](zc, cl, cm, out, eps, n, zc.shape[-1], int(seed) % (2**31 - 1),
                                int(offset) % (2**31 - 1), float(alpha), float(noise_scale), HAS_COND=has_cond,
                                WRITE_NOISE=return_noise, BLOCK_SIZE=BLOCK)
    return (out, eps) if return_noise else out

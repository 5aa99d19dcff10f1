"""Triton kernel: SDE noise injection z_b = α·z + (1 − α)·s·ε with ε drawn in-kernel (Philox, ``tl.randn``).

Element i (flat index in z's row-major order) draws from 64-bit Philox counter ``offset + i`` under key ``seed``:
no noise tensor is ever materialised, the same (seed, offset) gives the same noise, and a sampler that advances
``offset`` by ``z.numel()`` per step gets disjoint streams (offsets may exceed 2**32). ``return_noise=True`` also
writes ε out in fp32 (for tests and debugging).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .dispatch import check_launchable, dense_condition

BLOCK = 1024
INT32_LIMIT = 2**31 - 1
SEED_MOD = 2**63
OFFSET_LIMIT = 2**63


# seed and offset change every call: do not specialise (and recompile) on their values
@triton.jit(do_not_specialize=["seed", "offset"])
def _sde_noise_kernel(z_ptr, cl_ptr, cm_ptr, out_ptr, eps_ptr, n, C, seed, offset, alpha, noise_scale,
                      HAS_COND: tl.constexpr, WRITE_NOISE: tl.constexpr, INDEX_64: tl.constexpr,
                      BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    if INDEX_64:
        offs = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    else:
        offs = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    live = offs < n
    # 64-bit counter: randint4x splits it into the low and high Philox counter words
    eps = tl.randn(seed, offset + offs.to(tl.int64))
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
    """z_b (and, with ``return_noise``, the fp32 ε it drew) from the Triton kernel."""
    check_launchable(_sde_noise_kernel, z)
    offset = int(offset)
    if offset < 0 or offset + z.numel() > OFFSET_LIMIT:
        raise ValueError(f"offset must lie in [0, 2**63 - numel); got {offset}")
    zc = z.contiguous()
    cl, cm = dense_condition(zc, cond_latents, cond_mask)
    has_cond = cm is not None
    out = torch.empty_like(zc)
    eps = torch.empty(zc.shape, dtype=torch.float32, device=zc.device) if return_noise else out
    n = zc.numel()
    if n:
        grid = (triton.cdiv(n, BLOCK),)
        _sde_noise_kernel[grid](
            zc, cl if has_cond else zc, cm if has_cond else zc, out, eps, n, zc.shape[-1],
            int(seed) % SEED_MOD, offset, float(alpha), float(noise_scale),
            HAS_COND=has_cond, WRITE_NOISE=return_noise, INDEX_64=n + BLOCK > INT32_LIMIT, BLOCK_SIZE=BLOCK)
    return (out, eps) if return_noise else out

"""Triton kernel: SDE noise injection z_b = α·z + (1 − α)·s·ε with ε drawn in-kernel (Philox, ``tl.randn4x``).

One Philox round gives four 32-bit words, and both Box–Muller pairs of them are used: element i (flat index in
z's row-major order) takes normal number ``i % 4`` of the 64-bit Philox counter ``offset + i // 4`` under key
``seed``. No noise tensor is ever materialised, the same (seed, offset) gives the same noise, and a sampler that
advances ``offset`` by at least ``ceil(z.numel() / 4)`` per step gets disjoint streams (offsets may exceed
2**32). Earlier versions drew one counter per element and kept one Box–Muller output: the same (seed, offset)
now gives different, equally distributed noise (see CHANGELOG). ``return_noise=True`` also writes ε out in fp32
(for tests and debugging).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .dispatch import check_launchable, dense_condition

BLOCK = 1024  # elements per program: BLOCK // 4 Philox counters
INT32_LIMIT = 2**31 - 1
SEED_MOD = 2**63
OFFSET_LIMIT = 2**63
NORMALS_PER_COUNTER = 4


# seed and offset change every call: do not specialise (and recompile) on their values
@triton.jit(do_not_specialize=["seed", "offset"])
def _sde_noise_kernel(z_ptr, cl_ptr, cm_ptr, out_ptr, eps_ptr, n, C, seed, offset, alpha, noise_scale,
                      HAS_COND: tl.constexpr, WRITE_NOISE: tl.constexpr, INDEX_64: tl.constexpr,
                      BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(0)
    QUARTER: tl.constexpr = BLOCK_SIZE // 4
    rows = tl.arange(0, QUARTER)[:, None]      # one Philox counter per row ...
    lanes = tl.arange(0, 4)[None, :]           # ... and its four normals across
    if INDEX_64:
        start = pid.to(tl.int64) * BLOCK_SIZE
    else:
        start = pid * BLOCK_SIZE
    offs = start + rows * 4 + lanes            # (QUARTER, 4) flat element indices
    live = offs < n
    # 64-bit counters: randint4x splits them into the low and high Philox counter words
    counters = offset + (start // 4).to(tl.int64) + tl.arange(0, QUARTER).to(tl.int64)
    n0, n1, n2, n3 = tl.randn4x(seed, counters)
    eps = tl.where(lanes == 0, n0[:, None],
                   tl.where(lanes == 1, n1[:, None], tl.where(lanes == 2, n2[:, None], n3[:, None])))
    z = tl.load(z_ptr + offs, mask=live, other=0.0).to(tl.float32)
    zb = alpha * z + (1.0 - alpha) * noise_scale * eps
    if HAS_COND:
        is_cond = tl.load(cm_ptr + offs // C, mask=live, other=0) != 0
        # the condition latents are read only where the mask is on
        c = tl.load(cl_ptr + offs, mask=live & is_cond, other=0.0).to(tl.float32)
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
    counters = triton.cdiv(z.numel(), NORMALS_PER_COUNTER)
    if offset < 0 or offset + counters > OFFSET_LIMIT:
        raise ValueError(f"offset must lie in [0, 2**63 - numel / 4); got {offset}")
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

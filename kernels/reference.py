"""Plain-PyTorch references of the fused sampling kernels. They define the math; the Triton kernels must match.

Both compute in fp32 and return z's dtype. Shapes: (B, L, C) latents, (B, L) condition mask (bool, or float
where any non-zero value marks a condition position); both may be anything that broadcasts to those shapes.
Convention: t = 0 is noise, t = 1 is clean.
"""

from __future__ import annotations

from typing import Optional

import torch

_MASK64 = 2**64 - 1


def _cond_where(mask: torch.Tensor, cond_latents: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return torch.where((mask != 0)[..., None], cond_latents.float(), other)


def guidance_step_ref(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float,
                      t: float, t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                      cond_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Guidance combine + Euler step.

    x = x_u + w·(x_c − x_u) (or x_c without guidance; w = 1 is no guidance, w = 0 gives x_u);
    x = condition at condition positions; v = (x − z) / max(1 − t, t_eps), 0 at condition positions;
    z_next = z + (t_next − t)·v, the condition at condition positions. Returns (z_next, x) in z's dtype.
    """
    x = x_cond.float()
    if x_uncond is not None:
        xu = x_uncond.float()
        x = xu + scale * (x - xu)
    zf = z.float()
    v = (x - zf) / max(1.0 - t, t_eps)
    z_next = zf + (t_next - t) * v
    if cond_mask is not None:
        x = _cond_where(cond_mask, cond_latents, x)
        z_next = _cond_where(cond_mask, cond_latents, z_next)
    return z_next.to(z.dtype), x.to(z.dtype)


def generator_seed(seed: int, offset: int) -> int:
    """The torch.Generator seed the reference uses for (seed, offset): a fixed 64-bit mix of both."""
    return (int(seed) * 6364136223846793005 + int(offset) * 1442695040888963407 + 1) & _MASK64


def reference_noise(shape, seed: int, offset: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """fp32 N(0, 1) noise of ``shape`` from a generator seeded by (seed, offset); deterministic per device type.

    This is not the same stream as the Triton kernel's Philox draw (see ``sde_noise.py``).
    """
    g = torch.Generator(device=device)
    g.manual_seed(generator_seed(seed, offset))
    return torch.randn(tuple(shape), generator=g, device=device, dtype=torch.float32)


def sde_noise_inject_ref(z: torch.Tensor, *, alpha: float, noise_scale: float, noise: Optional[torch.Tensor] = None,
                         seed: int = 0, offset: int = 0, cond_latents: Optional[torch.Tensor] = None,
                         cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """z_b = α·z + (1 − α)·s·ε, condition positions restored to the condition latents.

    ε is ``noise`` when given (exact comparisons), else drawn by :func:`reference_noise` from (seed, offset).
    """
    if noise is None:
        noise = reference_noise(z.shape, seed, offset, z.device)
    zb = alpha * z.float() + (1.0 - alpha) * noise_scale * noise.float()
    if cond_mask is not None:
        zb = _cond_where(cond_mask, cond_latents, zb)
    return zb.to(z.dtype)

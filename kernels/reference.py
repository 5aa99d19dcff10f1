"""Plain-PyTorch references of the fused sampling kernels. They define the math; the Triton kernels must match.

Both compute in fp32 and return the input dtype. Shapes: (B, L, C) latents, (B, L) condition mask.
"""

from __future__ import annotations

from typing import Optional

import torch


def guidance_step_ref(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float,
                      t: float, t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                      cond_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Guidance combine + Euler step (ELF-METHOD §4).

    x = x_u + w·(x_c − x_u) (or x_c without guidance); x = condition at condition positions;
    v = (x − z) / max(1 − t, t_eps), 0 at condition positions; z_next = z + (t_next − t)·v, the condition at
    condition positions. Returns (z_next, x).
    """
    x = x_cond.float()
    if x_uncond is not None:
        xu = x_uncond.float()
        x = xu + scale * (x - xu)
    zf = z.float()
    v = (x - zf) / max(1.0 - t, t_eps)
    z_next = zf + (t_next - t) * v
    if cond_mask is not None:
        m = cond_mask.bool()[..., None]
        c = cond_latents.float()
        x = torch.where(m, c, x)
        z_next = torch.where(m, c, z_next)
    return z_next.to(z.dtype), x.to(z.dtype)


def sde_noise_inject_ref(z: torch.Tensor, *, alpha: float, noise_scale: float, noise: torch.Tensor,
                         cond_latents: Optional[torch.Tensor] = None,
                         cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """z_b = α·z + (1 − α)·s·ε with the given ε; condition positions restored."""
    zb = alpha * z.float() + (1.0 - alpha) * noise_scale * noise.float()
    if cond_mask is not None:
        zb = torch.where(cond_mask.bool()[..., None], cond_latents.float(), zb)
    return zb.to(z.dtype)

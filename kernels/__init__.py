"""Fused elementwise kernels of the ELF sampling step, each beside its PyTorch reference.

* :func:`guidance_step` — guidance combine + velocity + Euler step + condition restore, one pass.
* :func:`sde_noise_inject` — z_b = α·z + (1 − α)·s·ε with ε drawn inside the kernel (Philox from seed and
  offset: no noise tensor is materialised), condition restored.

Dispatch (``dispatch.resolve_backend``): Triton for CUDA tensors, the reference elsewhere;
``ELFCTL_KERNELS=auto|triton|torch`` forces a choice. Installed as ``elfctl.kernels``.
"""

from __future__ import annotations

from typing import Optional

import torch

from .dispatch import VALID, resolve_backend, triton_refusal
from .reference import guidance_step_ref, sde_noise_inject_ref

__all__ = ["guidance_step", "sde_noise_inject", "resolve_backend", "triton_refusal", "VALID",
           "guidance_step_ref", "sde_noise_inject_ref"]


def guidance_step(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float, t: float,
                  t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                  cond_mask: Optional[torch.Tensor] = None, backend: Optional[str] = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_next, x_pred) of one guided Euler step; see ``reference.guidance_step_ref`` for the math."""
    if resolve_backend(z, backend) == "triton":
        from .triton_guidance import guidance_step_triton

        return guidance_step_triton(x_cond, x_uncond, z, scale=scale, t=t, t_next=t_next, t_eps=t_eps,
                                    cond_latents=cond_latents, cond_mask=cond_mask)
    return guidance_step_ref(x_cond, x_uncond, z, scale=scale, t=t, t_next=t_next, t_eps=t_eps,
                             cond_latents=cond_latents, cond_mask=cond_mask)


def sde_noise_inject(z: torch.Tensor, *, alpha: float, noise_scale: float, seed: int, offset: int,
                     cond_latents: Optional[torch.Tensor] = None, cond_mask: Optional[torch.Tensor] = None,
                     noise: Optional[torch.Tensor] = None, backend: Optional[str] = None) -> torch.Tensor:
    """z_b = α·z + (1 − α)·s·ε, condition restored.

    With an explicit ``noise`` tensor the reference runs (exact, for reproducible CPU sampling and tests);
    without one, Triton draws ε from (seed, offset) in-kernel, and the reference draws it from a generator
    seeded by (seed, offset).
    """
    if noise is None and resolve_backend(z, backend) == "triton":
        from .triton_sde_noise import sde_noise_inject_triton

        return sde_noise_inject_triton(z, alpha=alpha, noise_scale=noise_scale, seed=seed, offset=offset,
                                       cond_latents=cond_latents, cond_mask=cond_mask)
    if noise is None:
        g = torch.Generator(device=z.device).manual_seed((seed * 1_000_003 + offset) % 2**63)
        noise = torch.randn(z.shape, generator=g, device=z.device, dtype=torch.float32)
    return sde_noise_inject_ref(z, alpha=alpha, noise_scale=noise_scale, noise=noise, cond_latents=cond_latents,
                                cond_mask=cond_mask)

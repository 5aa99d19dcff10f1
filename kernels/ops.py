"""Fused elementwise kernels of the ELF sampling step, each beside its PyTorch reference.

* :func:`guidance_step` — guidance combine + velocity + Euler step + condition restore, one pass.
* :func:`sde_noise_inject` — z_b = α·z + (1 − α)·s·ε with ε drawn inside the kernel (Philox from seed and
  offset: no noise tensor is materialised), condition restored.

Dispatch (:func:`resolve_backend`): Triton for CUDA tensors where a one-time probe launch works, the reference
elsewhere (and, with one warning line, where Triton fails); ``ELFCTL_KERNELS=auto|triton|torch`` (or
``backend=``) forces a choice. Kernels launch under the tensors' device and its current stream. Installed as ``elfctl.kernels.ops``;
importing it never requires Triton. See docs/kernels.md.

``kernels/`` is a plain source folder (no ``__init__.py``) mapped into the package as ``elfctl.kernels``, so a
checkout's root on ``sys.path`` never shadows Hugging Face's ``kernels`` package, which transformers imports.
"""

from __future__ import annotations

from typing import Optional

import torch

from .dispatch import VALID, check_inputs, launch, requested_backend, resolve_backend, triton_refusal
from .reference import guidance_step_ref, reference_noise, sde_noise_inject_ref

__all__ = ["guidance_step", "sde_noise_inject", "resolve_backend", "triton_refusal", "VALID",
           "guidance_step_ref", "sde_noise_inject_ref", "reference_noise"]


def guidance_step(x_cond: torch.Tensor, x_uncond: Optional[torch.Tensor], z: torch.Tensor, *, scale: float, t: float,
                  t_next: float, t_eps: float, cond_latents: Optional[torch.Tensor] = None,
                  cond_mask: Optional[torch.Tensor] = None, backend: Optional[str] = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_next, x_pred) of one guided Euler step, in z's dtype; see ``reference.guidance_step_ref`` for the math."""
    check_inputs(z, {"x_cond": x_cond, "x_uncond": x_uncond}, cond_latents, cond_mask)

    def reference():
        return guidance_step_ref(x_cond, x_uncond, z, scale=scale, t=t, t_next=t_next, t_eps=t_eps,
                                 cond_latents=cond_latents, cond_mask=cond_mask)

    if resolve_backend(z, backend) == "triton":
        from .triton_guidance import guidance_step_triton

        return launch("guidance_step", z, backend,
                      lambda: guidance_step_triton(x_cond, x_uncond, z, scale=scale, t=t, t_next=t_next, t_eps=t_eps,
                                                   cond_latents=cond_latents, cond_mask=cond_mask),
                      reference)
    return reference()


def sde_noise_inject(z: torch.Tensor, *, alpha: float, noise_scale: float, seed: int, offset: int,
                     cond_latents: Optional[torch.Tensor] = None, cond_mask: Optional[torch.Tensor] = None,
                     noise: Optional[torch.Tensor] = None, backend: Optional[str] = None) -> torch.Tensor:
    """z_b = α·z + (1 − α)·s·ε in z's dtype, condition positions restored.

    With an explicit ``noise`` tensor the reference runs whatever the backend (exact, for reproducible sampling
    and tests). Without one, Triton draws ε in-kernel (Philox key seed, counter offset + i // 4), the reference draws it
    from a torch.Generator seeded by (seed, offset): both deterministic, but not the same stream.
    """
    check_inputs(z, {"noise": noise}, cond_latents, cond_mask)

    def reference():
        return sde_noise_inject_ref(z, alpha=alpha, noise_scale=noise_scale, noise=noise, seed=seed, offset=offset,
                                    cond_latents=cond_latents, cond_mask=cond_mask)

    if noise is not None and requested_backend(backend) != "triton":
        return reference()  # explicit noise always runs the reference: no need to probe Triton for it
    chosen = resolve_backend(z, backend)  # validates a forced choice even when the reference will run
    if noise is None and chosen == "triton":
        from .triton_sde_noise import sde_noise_inject_triton

        return launch("sde_noise_inject", z, backend,
                      lambda: sde_noise_inject_triton(z, alpha=alpha, noise_scale=noise_scale, seed=seed,
                                                      offset=offset, cond_latents=cond_latents, cond_mask=cond_mask),
                      reference)
    return reference()

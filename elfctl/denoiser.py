"""The ELF denoiser: a network and the flow path it was trained on, as one function (z_t, t) -> (x̂, v̂).

The training objective (its self-conditioning and SC-CFG passes), the distillation teacher and the sampler all ask
the network the same question: given the noisy latent z_t at time t, the self-conditioning input and the SC-CFG
scale, what is the clean latent, and what velocity does that imply? :class:`Denoiser` answers it in one place: the
forward pass (under bf16 autocast on CUDA when asked), the path's parameterisation (x- or v-prediction,
:meth:`FlowPath.to_x_v`) and the condition positions put back to their clean latents. The decode head is not part
of the question: the callers that need logits call the network in decode mode themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from elfctl.flow import FlowPath, keep_condition


@dataclass
class Denoiser:
    model: nn.Module
    path: FlowPath
    bf16: bool = False  # bf16 autocast around the network on CUDA (its input projections and heads stay fp32)

    def autocast(self, device: torch.device):
        if self.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, z: torch.Tensor, t: torch.Tensor, *, x_sc: torch.Tensor, sc_cfg: Optional[torch.Tensor] = None,
                cond_x: Optional[torch.Tensor] = None, cond_mask: Optional[torch.Tensor] = None,
                velocity: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(x̂, v̂) for z (B, L, C) at times t (B,); fp32.

        ``cond_x`` / ``cond_mask`` (B, L): x̂ takes the clean condition latents at the condition positions (v̂ is
        the network's, as the objective's SC-CFG target uses it). ``velocity=False`` skips v̂ (None): a sampler
        that only needs x̂ saves an elementwise pass per step.
        """
        with self.autocast(z.device):
            out, _ = self.model(z, t, x_sc=x_sc, sc_cfg=sc_cfg)
        out = out.float()
        if velocity:
            x_hat, v_hat = self.path.to_x_v(out, z, t)
        else:
            x_hat, v_hat = self.path.to_x(out, z, t), None
        return keep_condition(x_hat, cond_x, cond_mask), v_hat

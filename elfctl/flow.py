"""The rectified-flow path of ELF and the random draws around it.

t = 0 is pure noise, t = 1 clean data:  z_t = t·x + (1 − t)·s·ε.
The network predicts either the clean latent x̂ ("x-prediction", the paper's) or the velocity v̂
("v-prediction", the ablation); both are turned into the same pair (x̂, v̂) by :meth:`FlowPath.to_x_v`
with v = (x − z) / max(1 − t, t_eps), so the loss, the guidance and the sampler never care which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


def _bcast(t: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1) for broadcasting over (B, L, C)."""
    return t.reshape(-1, 1, 1)


@dataclass(frozen=True)
class FlowPath:
    noise_scale: float = 2.0
    t_eps: float = 0.05
    prediction: str = "x"

    @classmethod
    def from_config(cls, cfg) -> "FlowPath":
        """The path a recipe trained with: ``objective.noise_scale``, ``objective.t_eps``, ``model.prediction``.

        The one place these constants are read from a config: the objective and the sampler both build their
        path here, so a v-prediction run is sampled as one.
        """
        return cls(noise_scale=cfg.objective.noise_scale, t_eps=cfg.objective.t_eps,
                   prediction=cfg.model.prediction)

    def interpolate(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
                    cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """z_t = t·x + (1 − t)·s·ε; condition positions (cond_mask (B, L) True) keep x."""
        tt = _bcast(t).to(x.dtype)
        z = tt * x + (1 - tt) * self.noise_scale * eps
        return keep_condition(z, x, cond_mask)

    def denom(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - _bcast(t)).clamp(min=self.t_eps)

    def velocity(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = (x − z) / max(1 − t, t_eps): the target velocity, or the one implied by a prediction x̂."""
        return (x - z) / self.denom(t).to(x.dtype)

    def to_x_v(self, net_out: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output -> (x̂, v̂) under this path's parameterisation."""
        if self.prediction == "x":
            return net_out, self.velocity(net_out, z, t)
        return self.to_x(net_out, z, t), net_out

    def to_x(self, net_out: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network output -> x̂ alone (x-prediction: the output itself; v-prediction: z + max(1 − t, t_eps)·v̂)."""
        if self.prediction == "x":
            return net_out
        return z + self.denom(t).to(z.dtype) * net_out


def keep_condition(z: torch.Tensor, x_cond: Optional[torch.Tensor], cond_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Put the clean condition latents back at condition positions (cond_mask (B, L) bool)."""
    if cond_mask is None or x_cond is None:
        return z
    return torch.where(cond_mask[..., None].bool(), x_cond, z)


def sample_time(n: int, *, schedule: str, p_mean: float, p_std: float,
                generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """Training times: sigmoid(N(p_mean, p_std)) ("logit_normal") or U(0, 1)."""
    if schedule == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator, device=device) * p_std + p_mean)
    if schedule == "uniform":
        return torch.rand(n, generator=generator, device=device)
    raise ValueError(f"unknown time schedule {schedule!r}")


def sample_sc_cfg_scale(n: int, *, lo: float, hi: float, generator: Optional[torch.Generator] = None,
                        device=None) -> torch.Tensor:
    """Training-time SC-CFG scale w = a·(b/a)^u − 1 with a = 1 + lo, b = 1 + hi, u ~ U(0, 1)."""
    a, b = 1.0 + lo, 1.0 + hi
    u = torch.rand(n, generator=generator, device=device)
    return a * (b / a) ** u - 1.0


def time_grid(steps: int, kind: str, *, p_mean: float = -1.5, p_std: float = 0.8,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A sampling grid of steps + 1 increasing times from 0 to 1 (on the CPU, float64).

    ``uniform``: linspace. ``logit_normal``: steps − 1 sorted logit-normal draws plus the endpoints,
    drawn from ``generator`` so a seed reproduces it.
    """
    if kind == "uniform":
        return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if kind == "logit_normal":
        inner = torch.sigmoid(torch.randn(steps - 1, generator=generator, dtype=torch.float64) * p_std + p_mean)
        return torch.cat([torch.zeros(1, dtype=torch.float64), inner.sort().values,
                          torch.ones(1, dtype=torch.float64)])
    raise ValueError(f"unknown time grid {kind!r}")

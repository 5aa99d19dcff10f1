"""The absorbing-state forward process of MDLM: the log-linear schedule, stratified times, corruption, and the
SUBS parameterisation of the denoiser.

Time runs the other way from ELF's: t = 0 is clean text, t = 1 all [MASK]. With alpha_t the probability that a
token is still itself at time t:

    alpha_t = 1 - (1 - eps) t,   sigma(t) = -log alpha_t,   alpha'_t = -(1 - eps),
    w(t) = -alpha'_t / (1 - alpha_t) = 1 / t          (eps cancels; equal to sigma'(t) / (e^sigma(t) - 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class LogLinearSchedule:
    eps: float = 1e-3

    def alpha(self, t):
        return 1 - (1 - self.eps) * t

    def sigma(self, t):
        """-log alpha_t (what a time-conditioned network is fed)."""
        if isinstance(t, torch.Tensor):
            return -torch.log1p(-(1 - self.eps) * t)
        return -math.log1p(-(1 - self.eps) * t)

    def dalpha(self, t):
        return -(1 - self.eps) + 0 * t

    def weight(self, t):
        """The NELBO weight -alpha'_t / (1 - alpha_t) = 1 / t."""
        return 1 / t


def training_times(n: int, eps: float, *, stratified: bool = True, device=None,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One time per row in [eps, 1). Stratified (MDLM's antithetic sampling): row i draws from its own stratum,
    t_i = eps + (1 - eps)(i + u_i)/n, so every batch covers [eps, 1) evenly and the loss has less variance."""
    u = torch.rand(n, device=device, generator=generator)
    if stratified:
        u = (torch.arange(n, device=device) + u) / n
    return eps + (1 - eps) * u


def corrupt(x: torch.Tensor, move_chance: torch.Tensor, mask_id: int,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """z_t: each token independently replaced by [MASK] with probability ``move_chance`` (B,) = 1 - alpha_t."""
    drop = torch.rand(x.shape, device=x.device, generator=generator) < move_chance[:, None]
    return torch.where(drop, torch.full_like(x, mask_id), x)


def masked_log_probs(logits: torch.Tensor, mask_id: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log p_theta at a masked position: log-softmax of the logits with [MASK] itself ruled out (logit -inf)."""
    logits = logits.to(dtype).clone()
    logits[..., mask_id] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def subs_log_probs(logits: torch.Tensor, z: torch.Tensor, mask_id: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The SUBS parameterisation (B, L, V): at a masked position, :func:`masked_log_probs` (p([MASK]) = 0); at an
    unmasked one, carry-over (log p = 0 at z_i, -inf elsewhere: an unmasked token is never changed, and no gradient
    reaches the network from it)."""
    logp = masked_log_probs(logits, mask_id, dtype)
    carry = torch.full_like(logp, float("-inf")).scatter_(-1, z.unsqueeze(-1), 0.0)
    return torch.where((z == mask_id).unsqueeze(-1), logp, carry)

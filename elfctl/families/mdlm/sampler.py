"""MDLM's ancestral sampler (``ddpm`` / ``ddpm_cache``), with float64 categorical draws.

Grid t_k = 1 - k(1 - delta)/T, k = 0..T, delta = 1e-5; the canvas starts all [MASK]. A step t -> s draws, at
every masked position, one of V + 1 outcomes with q(k) ∝ (alpha_s - alpha_t) p_theta(k | z_t) for a token k and
q([MASK]) ∝ 1 - alpha_s: a masked token is revealed with probability (alpha_s - alpha_t)/(1 - alpha_t), as a
draw from p_theta. Unmasked tokens are copied, never changed.

* ``ddpm`` uses the schedule's alpha (with eps); ``ddpm_cache`` takes alpha = 1 - t and, since the network is not
  fed t, reuses p_theta after a step that revealed nothing (no token changed, so the same input): the number of
  forwards is at most min(T, B·L + 1) + 1 for B rows of L tokens (a step needs a new forward only after a
  step that revealed a token somewhere in the batch).
* After the last step each position is still masked with probability delta/t; one more forward at t = delta
  fills them: ``greedy`` takes the argmax (MDLM), ``ancestral`` draws from p_theta (Duo's variant). No [MASK]
  survives. Forwards that could change nothing are not run: steps after the last mask is revealed, and the
  noise removal when no mask is left (MDLM runs both); the header's nfe counts the forwards that ran.
* Precision: the categorical draw is argmax_k q_k / E_k with E_k = -log U_k. In fp32, U has steps of 2^-24, so
  E >= ~6e-8 and the Gumbel tail is cut: the tiny masses (alpha_s - alpha_t) p of rare tokens lose, entropy falls
  and Gen PPL falls with it (Zheng et al. 2024). Here p_theta and U are always float64; the header says so.

Randomness: one generator per batch, seeded by the caller's (seed, batch) number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn

from elfctl.errors import ConfigError
from elfctl.families.mdlm.masking import LogLinearSchedule, masked_log_probs

DELTA = 1e-5  # the grid's end: sampling stops at t = delta, not 0
SAMPLING_DTYPE = torch.float64
CHUNK_BYTES = 1 << 28  # float64 masses drawn at once (rows x V x 8 bytes)


def _row_chunks(rows: int, vocab: int):
    step = max(1, CHUNK_BYTES // (8 * max(vocab, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def race(q: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The categorical draw of unnormalised masses ``q`` (..., K) given uniforms ``u``: argmax_k q_k / (-log u_k)
    (an exponential race: the same law as Gumbel-max)."""
    return (q / -torch.log(u)).argmax(dim=-1)


def categorical(q: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One float64 draw per row of ``q``."""
    q = q.to(SAMPLING_DTYPE)
    u = torch.rand(q.shape, dtype=SAMPLING_DTYPE, device=q.device, generator=generator)
    return race(q, u)


@dataclass
class MaskedSampleResult:
    token_ids: torch.Tensor                          # (B, L), no [MASK] left
    nfe: int                                         # network forwards: denoising steps run + 1 noise removal
    rows: int                                        # rows through the network
    trajectory: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, canvas (B, L) with [MASK])
    trajectory_passes: int = 0                       # the canvas is the state: no extra passes
    nfe_breakdown: dict = field(default_factory=dict)


class AncestralSampler:
    def __init__(self, model: nn.Module, *, mask_id: int, steps: int, eps: float = 1e-3, cache: bool = True,
                 noise_removal: str = "greedy", time_conditioning: bool = False, bf16: bool = False):
        if noise_removal not in ("greedy", "ancestral"):
            raise ConfigError(f"sample.noise_removal: {noise_removal!r} is not valid; choose greedy or ancestral")
        self.model, self.mask_id, self.steps = model, mask_id, steps
        self.noise = LogLinearSchedule(eps)                       # what the network is fed (sigma)
        self.alphas = LogLinearSchedule(0.0 if cache else eps)    # the step's alpha (ddpm_cache: 1 - t)
        self.cache, self.noise_removal, self.time_conditioning = cache, noise_removal, time_conditioning
        self.bf16 = bf16  # the network under bf16 autocast on CUDA (sample.bf16); the draws stay float64

    def grid(self) -> torch.Tensor:
        k = torch.arange(self.steps + 1, dtype=torch.float64)
        return 1 - k * (1 - DELTA) / self.steps

    @torch.no_grad()
    def logits(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """The network's logits (N, V), fp32, at the N masked positions of z (row-major order): what a cached step
        keeps (p_theta is formed from them in float64, a chunk of rows at a time)."""
        sigma = torch.full((z.shape[0],), float(self.noise.sigma(t)), device=z.device)
        rows = (z == self.mask_id).flatten().nonzero().squeeze(1)
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16 and z.device.type == "cuda"):
            return self.model(z, sigma, rows=rows).float()

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """p_theta in float64 (p([MASK]) = 0) of some rows of :meth:`logits`."""
        return masked_log_probs(logits, self.mask_id, SAMPLING_DTYPE).exp()

    def _draw(self, logits: torch.Tensor, a_t: float, a_s: float, generator: Optional[torch.Generator]
              ) -> torch.Tensor:
        """One outcome per row: a token with mass (a_s - a_t) p_theta, or [MASK] with mass 1 - a_s. In chunks of
        rows, so the float64 masses and uniforms of B·L·V outcomes never exist at once."""
        out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        for sl in _row_chunks(logits.shape[0], logits.shape[1]):
            q = self.probs(logits[sl]) * (a_s - a_t)
            q[:, self.mask_id] = 1 - a_s
            out[sl] = categorical(q, generator)
        return out

    def step(self, z: torch.Tensor, logits: torch.Tensor, t: float, s: float,
             generator: Optional[torch.Generator]) -> torch.Tensor:
        """z_s from z_t given the logits at z_t's masked positions; unmasked tokens are copied."""
        out = z.clone().flatten()
        rows = (z == self.mask_id).flatten().nonzero().squeeze(1)
        out[rows] = self._draw(logits, self.alphas.alpha(t), self.alphas.alpha(s), generator)
        return out.view_as(z)

    def fill(self, z: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Noise removal: every position still masked gets a token, from one forward at t = delta: the argmax of
        p_theta (greedy) or a draw from it (ancestral: alpha_s = 1, so [MASK] has mass 0)."""
        logits = self.logits(z, DELTA)
        out = z.clone().flatten()
        rows = (z == self.mask_id).flatten().nonzero().squeeze(1)
        if self.noise_removal == "greedy":
            out[rows] = logits.index_fill(1, torch.tensor([self.mask_id], device=z.device), float("-inf")).argmax(-1)
        else:
            out[rows] = self._draw(logits, 0.0, 1.0, generator)
        return out.view_as(z)

    def sample(self, n: int, length: int, latent_dim=None, *, seed: int, device: torch.device,
               cond=None, trajectory_steps: Sequence[int] = ()) -> MaskedSampleResult:
        if cond is not None:
            raise ConfigError("this masked-diffusion model samples unconditionally: no prompt or infill pins")
        device = torch.device(device)
        generator = torch.Generator(device=device).manual_seed(int(seed) % (2 ** 63))
        z = torch.full((n, length), self.mask_id, dtype=torch.long, device=device)
        grid, keep = self.grid().tolist(), set(trajectory_steps)
        p, forwards, trajectory = None, 0, []
        for k in range(self.steps):
            if not bool((z == self.mask_id).any()):  # all revealed: the remaining steps would change nothing
                trajectory += [(j, z.clone()) for j in range(k, self.steps) if j in keep]
                break
            if p is None:
                p = self.logits(z, grid[k])
                forwards += 1
            z_next = self.step(z, p, grid[k], grid[k + 1], generator)
            if not self.cache or self.time_conditioning or not torch.equal(z_next, z):
                p = None  # the input changed (or t is an input): the next step needs a new forward
            z = z_next
            if k in keep:
                trajectory.append((k, z.clone()))
        fills = int(bool((z == self.mask_id).any()))  # the noise-removal forward, when a mask is left
        if fills:
            z = self.fill(z, generator)
        breakdown = {"denoise": forwards, "noise_removal": fills, "skipped": self.steps - forwards, "trajectory": 0}
        return MaskedSampleResult(z, forwards + fills, n * (forwards + fills), trajectory, 0, breakdown)

"""The ELF sampler (ELF-METHOD §4): a time grid, Euler ODE / churned SDE steps, decode at t = 1.

Contract, so other samplers can plug in (the state carries everything that changes, the sampler nothing):

    grid(generator) -> times                   (steps + 1,) float64 on the CPU, increasing from 0 to 1
    init(batch, length, latent_dim, ...) -> SampleState
    step(state, t, t_next, *, last) -> SampleState
    decode(z) -> token ids                     (B, L)

and :meth:`EulerSampler.sample` drives them. Every elementwise update goes through ``elfctl.kernels``
(fused Triton kernels on CUDA, the PyTorch reference elsewhere): ``sde_noise_inject`` for the churn and
``guidance_step`` for the guidance combine + Euler step + condition pinning.

Guidance: SC-CFG is one pass with the SC-CFG tokens set to ``sc_cfg`` (the network was trained with them).
CFG of a conditional model evaluates the conditional and the unconditional input (condition latents zeroed in
z and in the self-conditioning input) in ONE forward of 2B rows and combines x̂ = x̂_u + w·(x̂_c − x̂_u); scale 1
skips the unconditional rows. Condition positions are pinned to the clean condition latents throughout.

Randomness: everything comes from one integer seed, split by :func:`mix_seed` into independent streams: the
time grid (one per draw), and per ROW the starting noise and the churn noise (:class:`~elfctl.sampling.noise.RowNoise`:
a generator per row on the CPU, a counter-based stream drawn for all rows at once on CUDA; on the Triton backend a
Philox key per draw whose counter for row j, step i starts at i·2^40 + j·L·C). So a row's noise does not depend on
how many rows share its batch, and on the CPU the result is bit-reproducible for a seed.

Numerics: on CUDA the network runs under bf16 autocast when ``sample.bf16`` (its input projections and heads stay
fp32), and the decode head's logits are made for at most ``decode_logit_bytes`` worth of rows at a time (argmax per
chunk), so B·L·V fp32 logits never exist at once. A state that turns non-finite stops the draw with one line naming
the step (:class:`~elfctl.errors.ElfRuntimeError`) instead of decoding NaNs to token 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
import torch.nn as nn

from elfctl.kernels import ops as kernels
from elfctl.config import ObjectiveConfig, SampleConfig
from elfctl.denoiser import Denoiser
from elfctl.errors import ElfRuntimeError
from elfctl.flow import FlowPath, keep_condition, time_grid
from elfctl.sampling.noise import RowNoise, mix_seed

_STEP_STRIDE = 1 << 40  # Philox counters per step: rows never overlap the next step's
DECODE_LOGIT_BYTES = 1 << 30  # fp32 logits alive at once in decode (B·L·V·4 bytes would be 33.7 GB at B 256, L 1024)

__all__ = ["Condition", "EulerSampler", "SampleResult", "SampleState", "SamplerSettings", "mix_seed", "sample"]


@dataclass
class SamplerSettings(SampleConfig):
    """What the sampler runs with: the resolved ``sample`` section (its one definition, defaults included) plus the
    logit-normal grid's P_mean / P_std, which are the training objective's."""

    p_mean: float = ObjectiveConfig.p_mean
    p_std: float = ObjectiveConfig.p_std

    @classmethod
    def from_config(cls, cfg, sample: Optional[SampleConfig] = None) -> "SamplerSettings":
        """From a recipe: ``sample`` (a resolved section) or the recipe's own, and its objective's grid constants."""
        sample = cfg.sample if sample is None else sample
        return cls(**dataclasses.asdict(sample), p_mean=cfg.objective.p_mean, p_std=cfg.objective.p_std)


@dataclass
class Condition:
    """Pinned positions: clean latents that stay fixed (a prompt, or infill prefix/suffix).

    ``guided``: the positions are a model condition trained with label drop, so CFG applies to them;
    infill pins of an unconditional model are not (no unconditional pass).
    """

    latents: torch.Tensor   # (B, L, C) fp32; only the masked positions matter
    mask: torch.Tensor      # (B, L) bool, True = pinned
    guided: bool = True


@dataclass
class SampleState:
    """Everything that changes during one draw."""

    z: torch.Tensor                          # (B, L, C) the state at the current time
    x_prev: torch.Tensor                     # (B, L, C) previous x̂: the next step's self-conditioning input
    index: int = 0                           # steps taken
    cond: Optional[Condition] = None
    noise: Optional[RowNoise] = None         # the rows' noise streams on the reference backend
    philox_seed: int = 0                     # churn noise key on the Triton backend
    backend: str = "torch"                   # resolved kernel backend for z
    nfe: int = 0                             # network forward passes so far
    rows: int = 0                            # rows through the network so far (a 2B CFG pass counts 2B)
    finite: list = field(default_factory=list)  # per step: a 0-d bool tensor, z finite after it (no sync)


@dataclass
class SampleResult:
    token_ids: torch.Tensor                       # (B, L) argmax of the decode head at the end
    z: torch.Tensor                               # (B, L, C) final state (t = 1)
    nfe: int                                      # forward passes of the draw: steps + 1 decode
    rows: int                                     # rows through the network (a 2B CFG pass counts 2B)
    trajectory: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, token ids (B, L))
    trajectory_passes: int = 0                    # extra decode passes spent on the trajectory (not in nfe)
    grid: Optional[torch.Tensor] = None           # the time grid used (steps + 1,)

    @property
    def ids(self) -> torch.Tensor:
        return self.token_ids

    @property
    def x_final(self) -> torch.Tensor:
        return self.z


class EulerSampler:
    """Euler ODE / churned-Euler SDE sampler of ELF; ``sampler="ode"`` (or γ = 0) takes the exact ODE step.

    ``path`` (:meth:`FlowPath.from_config`) says what the network predicts and carries the noise scale and t_eps.
    """

    def __init__(self, model: nn.Module, path: FlowPath, settings: SamplerSettings, *, backend: Optional[str] = None,
                 decode_logit_bytes: int = DECODE_LOGIT_BYTES):
        self.model = model
        self.path = path
        self.s = settings
        self.denoiser = Denoiser(model, path, bf16=settings.bf16)  # bf16 autocast on CUDA when sample.bf16
        self.backend = backend  # None: $ELFCTL_KERNELS (auto)
        self.decode_logit_bytes = decode_logit_bytes

    # ---------------------------------------------------------------- contract
    def grid(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(steps + 1,) float64 CPU times 0 = t_0 < ... < t_N = 1."""
        return time_grid(self.s.steps, self.s.time_grid, p_mean=self.s.p_mean, p_std=self.s.p_std,
                         generator=generator)

    def init(self, batch_size: int, length: int, latent_dim: int, *, seed: int, device: torch.device,
             cond: Optional[Condition] = None) -> SampleState:
        """z = s·ε, x_prev = 0, both with the condition pinned."""
        noise = RowNoise(seed, batch_size, device)
        eps = noise.draw((batch_size, length, latent_dim))
        c_lat, c_mask = (cond.latents, cond.mask) if cond is not None else (None, None)
        z = keep_condition(self.path.noise_scale * eps, c_lat, c_mask)
        x_prev = keep_condition(torch.zeros_like(eps), c_lat, c_mask)
        return SampleState(z, x_prev, cond=cond, noise=noise, philox_seed=mix_seed(seed, 2),
                           backend=kernels.resolve_backend(z, self.backend))

    def step(self, state: SampleState, t: float, t_next: float, *, last: bool = False) -> SampleState:
        """One step t → t_next: churn back to t_b = α·t (SDE, not on the last step), predict, guided Euler step."""
        z, cond = state.z, state.cond
        c_lat, c_mask = (cond.latents, cond.mask) if cond is not None else (None, None)
        if self.s.sampler == "sde" and self.s.gamma > 0 and not last:
            alpha = min(max(1.0 - self.s.gamma * (t_next - t), 0.0), 1.0)
            noise = None
            if state.backend != "triton":  # explicit, seeded noise: reproducible on every device
                noise = state.noise.draw(z.shape)
            z = kernels.sde_noise_inject(z, alpha=alpha, noise_scale=self.path.noise_scale, seed=state.philox_seed,
                                         offset=state.index * _STEP_STRIDE, cond_latents=c_lat, cond_mask=c_mask,
                                         noise=noise, backend=state.backend)
            t = alpha * t
        x_c, x_u, rows = self.predict(z, t, state.x_prev, cond)
        z_next, x_hat = kernels.guidance_step(x_c, x_u, z, scale=self.s.cfg, t=t, t_next=t_next,
                                              t_eps=self.path.t_eps, cond_latents=c_lat, cond_mask=c_mask,
                                              backend=state.backend)
        return replace(state, z=z_next, x_prev=x_hat, index=state.index + 1, nfe=state.nfe + 1,
                       rows=state.rows + rows, finite=[*state.finite, torch.isfinite(z_next).all()])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L): one pass at t = 1 in decode mode, zero self-conditioning, SC-CFG tokens at w_sc.

        The logits exist for a chunk of rows at a time (at most ``decode_logit_bytes`` of fp32), argmaxed per chunk.
        """
        B, L = z.shape[:2]
        vocab = getattr(self.model, "vocab_size", None)
        rows = B if not vocab else max(1, min(B, self.decode_logit_bytes // max(1, L * vocab * 4)))
        ids = [self._forward(part, 1.0, torch.zeros_like(part), decode=True)[1].argmax(dim=-1)
               for part in z.split(rows)]
        return ids[0] if len(ids) == 1 else torch.cat(ids)

    # ---------------------------------------------------------------- network
    def _forward(self, z: torch.Tensor, t: float, x_sc: torch.Tensor, *, decode: bool = False):
        """The network on rows at one time t, SC-CFG tokens at w_sc (the decode pass; denoising: :meth:`predict`)."""
        B = z.shape[0]
        tt = torch.full((B,), t, device=z.device, dtype=torch.float32)
        w = torch.full((B,), self.s.sc_cfg, device=z.device, dtype=torch.float32)
        with self.denoiser.autocast(z.device):
            out, logits = self.model(z, tt, x_sc=x_sc, sc_cfg=w, decode=True if decode else None, key_mask=None)
        return out.float(), logits

    def _x_hat(self, z: torch.Tensor, t: float, x_sc: torch.Tensor) -> torch.Tensor:
        B = z.shape[0]
        tt = torch.full((B,), t, device=z.device, dtype=torch.float32)
        w = torch.full((B,), self.s.sc_cfg, device=z.device, dtype=torch.float32)
        return self.denoiser.predict(z, tt, x_sc=x_sc, sc_cfg=w, velocity=False)[0]

    def predict(self, z: torch.Tensor, t: float, x_prev: torch.Tensor, cond: Optional[Condition]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
        """(x̂ with the condition, x̂ without it or None, rows run): one forward, 2B rows when CFG is on."""
        B = z.shape[0]
        if cond is not None and cond.guided and self.s.cfg != 1.0:
            m = cond.mask[..., None]
            zz = torch.cat([z, z.masked_fill(m, 0.0)])
            xs = torch.cat([x_prev, x_prev.masked_fill(m, 0.0)])
            x_hat = self._x_hat(zz, t, xs)
            return x_hat[:B], x_hat[B:], 2 * B
        return self._x_hat(z, t, x_prev), None, B

    # ---------------------------------------------------------------- driver
    @torch.no_grad()
    def sample(self, batch_size: int, length: int, latent_dim: int, *, seed: int, device: torch.device,
               cond: Optional[Condition] = None, trajectory_steps: Sequence[int] = ()) -> SampleResult:
        """Draw ``batch_size`` sequences; everything random comes from ``seed``.

        ``trajectory_steps``: step indices k (0..steps−1) at which the current x̂ (the prediction made by step k)
        is decoded with the decode head, for ``SampleResult.trajectory``.
        """
        grid_t = self.grid(torch.Generator().manual_seed(mix_seed(seed, 0)))
        grid = grid_t.tolist()
        state = self.init(batch_size, length, latent_dim, seed=seed, device=torch.device(device), cond=cond)
        wanted = set(int(k) for k in trajectory_steps)
        n = len(grid) - 1
        traj = []
        for i in range(n):
            state = self.step(state, grid[i], grid[i + 1], last=i == n - 1)  # the last step is always ODE
            if i in wanted:
                traj.append((i, self.decode(state.x_prev)))
        check_finite(state, grid)
        ids = self.decode(state.z)
        return SampleResult(ids, state.z, state.nfe + 1, state.rows + batch_size, traj, len(traj), grid_t)


def check_finite(state: SampleState, grid: Sequence[float]) -> None:
    """One device-to-host copy for the whole draw: raise naming the first step after which z was not finite."""
    if not state.finite:
        return
    ok = torch.stack(state.finite).cpu()
    if bool(ok.all()):
        return
    k = int((~ok).nonzero()[0, 0])
    raise ElfRuntimeError(f"sampling: the state became non-finite (NaN or inf) at step {k + 1} of {len(ok)} "
                          f"(t {grid[k]:.4f} -> {grid[k + 1]:.4f}); no samples written for this batch. Check the "
                          f"checkpoint's weights and the guidance scales")


def sample(model: nn.Module, *, batch: int, length: int, path: FlowPath,
           settings: Optional[SamplerSettings] = None, seed: int = 0, device: Optional[torch.device] = None,
           cond: Optional[Condition] = None, trajectory_steps: Sequence[int] = ()) -> SampleResult:
    """Convenience: sample from an ELF network (``model.latent_dim`` wide).

    ``path`` is required (``FlowPath.from_config(cfg)`` for a trained run): it says whether the network predicts x
    or v, which the weights alone do not tell.
    """
    settings = settings if settings is not None else SamplerSettings()
    device = device or next(model.parameters()).device
    return EulerSampler(model, path, settings).sample(batch, length, model.latent_dim, seed=seed, device=device,
                                                      cond=cond, trajectory_steps=trajectory_steps)

"""The ELF sampler (ELF-METHOD §4): a time grid, Euler ODE / churned SDE steps, decode at t = 1.

Contract, so other samplers can plug in: ``grid(generator) -> times`` (increasing, 0 → 1),
``step(state, i, t, t_next) -> state`` and ``decode(z) -> token ids``; ``sample(...)`` drives them.
Every elementwise update goes through ``elfctl.kernels`` (fused Triton kernels on CUDA, the PyTorch reference
elsewhere). Guidance: SC-CFG is one pass with the SC-CFG tokens set to ``sc_cfg``; CFG of a conditional model
evaluates the conditional and unconditional inputs in ONE forward of 2B rows; scale 1 skips it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as nn

from elfctl import kernels
from elfctl.flow import FlowPath, keep_condition, time_grid


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 32
    sampler: str = "sde"          # ode | sde
    gamma: float = 1.5            # SDE churn; 0 = ODE
    time_grid: str = "logit_normal"
    cfg: float = 1.0              # CFG scale of a conditional model's condition (1 = none)
    sc_cfg: float = 3.0           # SC-CFG scale fed to the SC-CFG tokens
    noise_scale: float = 2.0
    t_eps: float = 0.05
    p_mean: float = -1.5
    p_std: float = 0.8


@dataclass
class Condition:
    """Pinned positions: clean latents that stay fixed (a prompt, or infill prefix/suffix).

    ``guided``: the positions are a model condition trained with label drop, so CFG applies to them;
    infill pins of an unconditional model are not (no unconditional pass).
    """

    latents: torch.Tensor   # (B, L, C)
    mask: torch.Tensor      # (B, L) bool
    guided: bool = True


@dataclass
class SampleResult:
    token_ids: torch.Tensor                       # (B, L)
    z: torch.Tensor                               # (B, L, C) final state
    nfe: int                                      # network forward passes, decode included
    rows: int                                     # rows through the network (a 2B CFG pass counts 2B)
    trajectory: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, token ids)


@dataclass
class _State:
    z: torch.Tensor
    x_prev: torch.Tensor


class EulerSampler:
    def __init__(self, model: nn.Module, path: FlowPath, settings: SamplerSettings, *, backend: Optional[str] = None):
        self.model = model
        self.path = path
        self.s = settings
        self.backend = backend
        self.nfe = 0
        self.rows = 0

    # ---------------------------------------------------------------- contract
    def grid(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return time_grid(self.s.steps, self.s.time_grid, p_mean=self.s.p_mean, p_std=self.s.p_std,
                         generator=generator)

    def _net(self, z, t: float, x_sc, sc_cfg: float, decode: bool = False):
        B = z.shape[0]
        tt = torch.full((B,), t, device=z.device, dtype=torch.float32)
        w = torch.full((B,), sc_cfg, device=z.device, dtype=torch.float32)
        self.nfe += 1
        self.rows += B
        return self.model(z, tt, x_sc=x_sc, sc_cfg=w, decode=True if decode else None)

    def predict(self, z: torch.Tensor, t: float, x_prev: torch.Tensor, cond: Optional[Condition]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(x̂ with the condition, x̂ without it or None): one forward, 2B rows when CFG is on."""
        if cond is not None and cond.guided and self.s.cfg != 1.0:
            B = z.shape[0]
            m = cond.mask[..., None]
            z_u = z.masked_fill(m, 0.0)
            xs_u = x_prev.masked_fill(m, 0.0)
            zz, xs = torch.cat([z, z_u]), torch.cat([x_prev, xs_u])
            out, _ = self._net(zz, t, xs, self.s.sc_cfg)
            x_hat, _ = self.path.to_x_v(out, zz, torch.full((2 * B,), t, device=z.device))
            return x_hat[:B], x_hat[B:]
        out, _ = self._net(z, t, x_prev, self.s.sc_cfg)
        x_hat, _ = self.path.to_x_v(out, z, torch.full((z.shape[0],), t, device=z.device))
        return x_hat, None

    def step(self, state: _State, i: int, t: float, t_next: float, cond: Optional[Condition], *,
             ode: bool, seed: int, generator: Optional[torch.Generator]) -> _State:
        """One step from t to t_next: churn back to t_b (SDE), predict, guided Euler step to t_next."""
        z = state.z
        c_lat = cond.latents if cond is not None else None
        c_mask = cond.mask if cond is not None else None
        backend = kernels.resolve_backend(z, self.backend)
        if not ode and self.s.gamma > 0:
            alpha = min(max(1.0 - self.s.gamma * (t_next - t), 0.0), 1.0)
            noise = None
            if backend == "torch":
                noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=torch.float32)
            z = kernels.sde_noise_inject(z, alpha=alpha, noise_scale=self.s.noise_scale, seed=seed,
                                         offset=(i + 1) * z.numel(), cond_latents=c_lat, cond_mask=c_mask,
                                         noise=noise, backend=backend)
            t = alpha * t
        x_c, x_u = self.predict(z, t, state.x_prev, cond)
        z_next, x_hat = kernels.guidance_step(x_c, x_u, z, scale=self.s.cfg, t=t, t_next=t_next, t_eps=self.s.t_eps,
                                              cond_latents=c_lat, cond_mask=c_mask, backend=backend)
        return _State(z_next, x_hat)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L): one pass at t = 1 in decode mode, zero self-conditioning, argmax."""
        _, logits = self._net(z, 1.0, torch.zeros_like(z), self.s.sc_cfg, decode=True)
        return logits.argmax(dim=-1)

    # ---------------------------------------------------------------- driver
    @torch.no_grad()
    def sample(self, batch_size: int, length: int, latent_dim: int, *, seed: int, device: torch.device,
               cond: Optional[Condition] = None, trajectory_steps: Sequence[int] = ()) -> SampleResult:
        """Draw ``batch_size`` sequences; everything random comes from ``seed``."""
        self.nfe = self.rows = 0
        cpu_gen = torch.Generator().manual_seed(seed)
        grid = self.grid(cpu_gen).tolist()
        dev_gen = torch.Generator(device=device).manual_seed(seed + 1)
        eps = torch.randn(batch_size, length, latent_dim, generator=dev_gen, device=device)
        c_lat = cond.latents if cond is not None else None
        c_mask = cond.mask if cond is not None else None
        state = _State(keep_condition(self.s.noise_scale * eps, c_lat, c_mask),
                       keep_condition(torch.zeros_like(eps), c_lat, c_mask))
        n = len(grid) - 1
        traj = []
        for i in range(n):
            last = i == n - 1  # the last step is always an ODE step
            state = self.step(state, i, grid[i], grid[i + 1], cond, ode=self.s.sampler == "ode" or last,
                              seed=seed, generator=dev_gen)
            if i in trajectory_steps:
                traj.append((i, self.decode(state.x_prev)))
        ids = self.decode(state.z)
        return SampleResult(ids, state.z, self.nfe, self.rows, traj)

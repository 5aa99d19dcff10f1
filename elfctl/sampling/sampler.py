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
time grid (one per draw), and per ROW the starting noise and the churn noise (a generator per row on the
reference backend; on the Triton backend a Philox key per draw whose counter for row j, step i starts at
i·2^40 + j·L·C). So a row's noise does not depend on how many rows share its batch, and on the CPU the result is
bit-reproducible for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
import torch.nn as nn

from elfctl import kernels
from elfctl.flow import FlowPath, keep_condition, time_grid

_MASK64 = (1 << 64) - 1
_STEP_STRIDE = 1 << 40  # Philox counters per step: rows never overlap the next step's


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 chain): (seed, batch) pairs never collide the way seed·K + b can."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


_POOL = None


def _row_randn(shape, generators: list, device) -> torch.Tensor:
    """fp32 N(0, 1) of ``shape`` (B, ...), row j drawn from ``generators[j]``.

    On the CPU, torch draws normals on one thread; rows have their own generators, so large draws are split over
    torch's intra-op thread count (same numbers, about half the time on two cores).
    """
    global _POOL
    out = torch.empty(shape, device=device, dtype=torch.float32)

    def draw(rows: range) -> None:
        for j in rows:
            torch.randn(out[j].shape, generator=generators[j], device=device, dtype=torch.float32, out=out[j])

    workers = min(torch.get_num_threads(), len(generators))
    if torch.device(device).type != "cpu" or workers < 2 or out.numel() < (1 << 16):
        draw(range(len(generators)))
        return out
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="elf-noise")
    list(_POOL.map(draw, [range(k, len(generators), workers) for k in range(workers)]))
    return out


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 32
    sampler: str = "sde"          # ode | sde
    gamma: float = 1.5            # SDE churn; 0 = ODE
    time_grid: str = "logit_normal"
    cfg: float = 1.0              # CFG scale of a conditional model's condition (1 = none)
    sc_cfg: float = 3.0           # SC-CFG scale fed to the SC-CFG tokens
    noise_scale: float = 2.0      # s: z_0 = s·ε
    t_eps: float = 0.05
    p_mean: float = -1.5          # logit-normal grid: the training P_mean / P_std
    p_std: float = 0.8


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
    generators: list = field(default_factory=list)  # one per row: noise on the reference backend (z's device)
    philox_seed: int = 0                     # churn noise key on the Triton backend
    backend: str = "torch"                   # resolved kernel backend for z
    nfe: int = 0                             # network forward passes so far
    rows: int = 0                            # rows through the network so far (a 2B CFG pass counts 2B)


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
    """Euler ODE / churned-Euler SDE sampler of ELF; ``sampler="ode"`` (or γ = 0) takes the exact ODE step."""

    def __init__(self, model: nn.Module, path: FlowPath, settings: SamplerSettings, *, backend: Optional[str] = None):
        self.model = model
        self.path = path
        self.s = settings
        self.backend = backend  # None: $ELFCTL_KERNELS (auto)

    # ---------------------------------------------------------------- contract
    def grid(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(steps + 1,) float64 CPU times 0 = t_0 < ... < t_N = 1."""
        return time_grid(self.s.steps, self.s.time_grid, p_mean=self.s.p_mean, p_std=self.s.p_std,
                         generator=generator)

    def init(self, batch_size: int, length: int, latent_dim: int, *, seed: int, device: torch.device,
             cond: Optional[Condition] = None) -> SampleState:
        """z = s·ε, x_prev = 0, both with the condition pinned."""
        gens = [torch.Generator(device=device).manual_seed(mix_seed(seed, 1, j)) for j in range(batch_size)]
        eps = _row_randn((batch_size, length, latent_dim), gens, device)
        c_lat, c_mask = (cond.latents, cond.mask) if cond is not None else (None, None)
        z = keep_condition(self.s.noise_scale * eps, c_lat, c_mask)
        x_prev = keep_condition(torch.zeros_like(eps), c_lat, c_mask)
        return SampleState(z, x_prev, cond=cond, generators=gens, philox_seed=mix_seed(seed, 2),
                           backend=kernels.resolve_backend(z, self.backend))

    def step(self, state: SampleState, t: float, t_next: float, *, last: bool = False) -> SampleState:
        """One step t → t_next: churn back to t_b = α·t (SDE, not on the last step), predict, guided Euler step."""
        z, cond = state.z, state.cond
        c_lat, c_mask = (cond.latents, cond.mask) if cond is not None else (None, None)
        if self.s.sampler == "sde" and self.s.gamma > 0 and not last:
            alpha = min(max(1.0 - self.s.gamma * (t_next - t), 0.0), 1.0)
            noise = None
            if state.backend != "triton":  # explicit, seeded noise: reproducible on every device
                noise = _row_randn(z.shape, state.generators, z.device)
            z = kernels.sde_noise_inject(z, alpha=alpha, noise_scale=self.s.noise_scale, seed=state.philox_seed,
                                         offset=state.index * _STEP_STRIDE, cond_latents=c_lat, cond_mask=c_mask,
                                         noise=noise, backend=state.backend)
            t = alpha * t
        x_c, x_u, rows = self.predict(z, t, state.x_prev, cond)
        z_next, x_hat = kernels.guidance_step(x_c, x_u, z, scale=self.s.cfg, t=t, t_next=t_next,
                                              t_eps=self.s.t_eps, cond_latents=c_lat, cond_mask=c_mask,
                                              backend=state.backend)
        return replace(state, z=z_next, x_prev=x_hat, index=state.index + 1, nfe=state.nfe + 1,
                       rows=state.rows + rows)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L): one pass at t = 1 in decode mode, zero self-conditioning, SC-CFG tokens at w_sc."""
        _, logits = self._forward(z, 1.0, torch.zeros_like(z), decode=True)
        return logits.argmax(dim=-1)

    # ---------------------------------------------------------------- network
    def _forward(self, z: torch.Tensor, t: float, x_sc: torch.Tensor, *, decode: bool = False):
        B = z.shape[0]
        tt = torch.full((B,), t, device=z.device, dtype=torch.float32)
        w = torch.full((B,), self.s.sc_cfg, device=z.device, dtype=torch.float32)
        return self.model(z, tt, x_sc=x_sc, sc_cfg=w, decode=True if decode else None, key_mask=None)

    def _x_hat(self, out: torch.Tensor, z: torch.Tensor, t: float) -> torch.Tensor:
        if self.path.prediction == "x":
            return out  # the network's output is x̂ itself
        x_hat, _ = self.path.to_x_v(out, z, torch.full((z.shape[0],), t, device=z.device))
        return x_hat

    def predict(self, z: torch.Tensor, t: float, x_prev: torch.Tensor, cond: Optional[Condition]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
        """(x̂ with the condition, x̂ without it or None, rows run): one forward, 2B rows when CFG is on."""
        B = z.shape[0]
        if cond is not None and cond.guided and self.s.cfg != 1.0:
            m = cond.mask[..., None]
            zz = torch.cat([z, z.masked_fill(m, 0.0)])
            xs = torch.cat([x_prev, x_prev.masked_fill(m, 0.0)])
            out, _ = self._forward(zz, t, xs)
            x_hat = self._x_hat(out, zz, t)
            return x_hat[:B], x_hat[B:], 2 * B
        out, _ = self._forward(z, t, x_prev)
        return self._x_hat(out, z, t), None, B

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
        ids = self.decode(state.z)
        return SampleResult(ids, state.z, state.nfe + 1, state.rows + batch_size, traj, len(traj), grid_t)


def sample(model: nn.Module, *, batch: int, length: int, settings: SamplerSettings = SamplerSettings(),
           path: Optional[FlowPath] = None, seed: int = 0, device: Optional[torch.device] = None,
           cond: Optional[Condition] = None, trajectory_steps: Sequence[int] = ()) -> SampleResult:
    """Convenience: sample from an ELF network (``model.latent_dim`` wide) with default x-prediction path."""
    path = path or FlowPath(settings.noise_scale, settings.t_eps)
    device = device or next(model.parameters()).device
    return EulerSampler(model, path, settings).sample(batch, length, model.latent_dim, seed=seed, device=device,
                                                      cond=cond, trajectory_steps=trajectory_steps)

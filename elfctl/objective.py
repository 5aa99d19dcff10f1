"""The ELF training objective for one (micro-)batch (ELF-METHOD §3).

Each example takes one of two branches:

* denoise (prob 1 − decoder_prob): z_t = t·x + (1 − t)·s·ε, the network predicts x̂ (or v̂), and the loss is
  the mean over channels of (v̂ − v)² with v = (x − z_t)/max(1 − t, t_eps), optionally with the SC-CFG
  guided target;
* decode (prob decoder_prob): the clean latent corrupted per token, z = λ·x + (1 − λ)·s_dec·ε with
  λ = sigmoid(N(μ, σ)), time 1, mode gate on, cross-entropy of the decode logits against the tokens.

One forward serves both kinds of rows; the loss is (Σ CE + Σ L2) / (number of loss positions).

Decode rows get an entirely zero self-conditioning half, condition positions included (as the authors' code, and
as the sampler's decode pass); denoise rows keep the clean condition latents there. The network sees every
position as a key: the authors pass no key mask in training or sampling, and neither does elfctl (the sampler
cannot know where generated text ends, so a training-only mask would differ from sampling).

The per-row branch draws (decode rows, self-conditioned rows) live on the CPU: which rows take which pass is
then known on the host, so choosing them never waits for the accelerator (no ``.any()`` / ``nonzero()`` on a
device tensor in a training step).

The two no-grad helper passes (self-conditioning's first pass and SC-CFG's conditional pass) only run on
the rows that use them: the first on denoise rows, the second on self-conditioned denoise rows. The authors'
code runs both on the whole batch; the rows skipped here never reach the loss, so the result is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.denoiser import Denoiser
from elfctl.flow import FlowPath, keep_condition, sample_sc_cfg_scale, sample_time


def draw_branches(c, x: torch.Tensor, use_sc_cfg: bool) -> tuple:
    """The per-row branch draws every ELF-style loss shares, in this order (the RNG stream depends on it):
    decode rows (CPU), decode λ (B, L, 1), decode noise, self-conditioning rows (CPU), SC-CFG scale or None.

    The two row masks come from the CPU generator: choosing rows never waits for the device."""
    B, L, _ = x.shape
    dev = x.device
    decode_rows = torch.rand(B) < c.decoder_prob
    lam = torch.sigmoid(torch.randn(B, L, 1, device=dev) * c.decoder_p_std + c.decoder_p_mean)
    eps_dec = torch.randn_like(x)
    sc_rows = torch.rand(B) < c.self_cond_prob
    sc_cfg = sample_sc_cfg_scale(B, lo=c.sc_cfg_min, hi=c.sc_cfg_max, device=dev) if use_sc_cfg else None
    return decode_rows, lam, eps_dec, sc_rows, sc_cfg


@dataclass
class Draws:
    """Every random quantity of one batch, drawn up front so tests can set them by hand."""

    t: torch.Tensor            # (B,) denoise time
    eps: torch.Tensor          # (B, L, C) denoise noise
    decode_rows: torch.Tensor  # (B,) bool, CPU: example trains the decode branch
    lam: torch.Tensor          # (B, L, 1) decode-branch per-token signal fraction
    eps_dec: torch.Tensor      # (B, L, C) decode-branch noise (unit scale)
    sc_rows: torch.Tensor      # (B,) bool, CPU: example trains with self-conditioning
    sc_cfg: Optional[torch.Tensor]  # (B,) SC-CFG scale fed to its tokens, or None


@dataclass
class LossOutput:
    loss: torch.Tensor         # scalar, differentiable
    l2: torch.Tensor           # mean per-position L2 over denoise positions (detached)
    ce: torch.Tensor           # mean per-position CE over decode positions (detached)
    n_positions: torch.Tensor  # number of loss positions (detached)


class ElfObjective:
    """Builds the ELF loss from an ``ObjectiveConfig`` and the model's prediction type.

    Build it from a whole recipe with :meth:`from_config` (trainer, benchmarks): that is the one place that
    knows which other sections (prediction, SC-CFG tokens, pad token) the loss depends on.
    """

    def __init__(self, obj_cfg, prediction: str = "x", use_sc_cfg: bool = True, pad_token: str = "pad",
                 path: Optional[FlowPath] = None):
        self.cfg = obj_cfg
        self.path = path or FlowPath(noise_scale=obj_cfg.noise_scale, t_eps=obj_cfg.t_eps, prediction=prediction)
        self.use_sc_cfg = use_sc_cfg
        self.pad_token = pad_token

    @classmethod
    def from_config(cls, cfg) -> "ElfObjective":
        """The objective of a whole :class:`~elfctl.config.Config`."""
        return cls(cfg.objective, use_sc_cfg=cfg.model.num_sc_cfg_tokens > 0, pad_token=cfg.data.pad_token,
                   path=FlowPath.from_config(cfg))

    def draw(self, x: torch.Tensor) -> Draws:
        """Draw a batch's randomness from torch's global RNGs (seeded per step and shard by the trainer).

        The two per-row branch masks come from the CPU generator (on a CPU run: the same stream as before)."""
        c = self.cfg
        t = sample_time(x.shape[0], schedule=c.time_schedule, p_mean=c.p_mean, p_std=c.p_std, device=x.device)
        eps = torch.randn_like(x)
        return Draws(t, eps, *draw_branches(c, x, self.use_sc_cfg))

    def loss_mask(self, attention_mask: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """Positions that carry loss: valid target tokens (pad=pad) or every target position (pad=eos)."""
        base = attention_mask.bool() if self.pad_token == "pad" else torch.ones_like(cond_mask, dtype=torch.bool)
        return base & ~cond_mask.bool()

    def __call__(self, model: nn.Module, x: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 cond_mask: torch.Tensor, *, draws: Optional[Draws] = None, drop_cond: Optional[torch.Tensor] = None,
                 helper_model: Optional[nn.Module] = None) -> LossOutput:
        """Loss of one batch.

        Args:
            model: the network (possibly DDP-wrapped) for the differentiable pass.
            x: (B, L, C) clean normalised latents; input_ids: (B, L) targets of the decode branch.
            attention_mask: (B, L) valid tokens; cond_mask: (B, L) condition positions (kept clean, no loss).
            draws: the batch's randomness (default: drawn now).
            drop_cond: (B,) bool, label drop for CFG: the condition latents of these rows are zeroed.
            helper_model: the unwrapped network for the no-grad passes (default: ``model``).
        """
        helper = helper_model if helper_model is not None else model
        d = draws if draws is not None else self.draw(x)
        path, c = self.path, self.cfg
        cond = cond_mask.bool()
        if drop_cond is not None:
            x = torch.where((drop_cond[:, None] & cond)[..., None], torch.zeros_like(x), x)

        z = path.interpolate(x, d.eps, d.t, cond)
        z_dec = d.lam * x + (1 - d.lam) * c.decoder_noise_scale * d.eps_dec
        # Row choices on the host (Draws keeps them on the CPU; .cpu() is then free), used on the device.
        dec_host, sc_host = d.decode_rows.cpu(), d.sc_rows.cpu()
        dec = dec_host.to(x.device, non_blocking=True)
        rows_dec = dec[:, None, None]
        z_in = torch.where(rows_dec, z_dec, z)
        t_in = torch.where(dec, torch.ones_like(d.t), d.t)
        v_target = path.velocity(x, z, d.t)

        # Self-conditioning half: zero, with the clean condition latents on denoise rows only (decode rows:
        # entirely zero, condition positions included).
        x_sc = keep_condition(torch.zeros_like(x), x, cond & ~dec[:, None])
        # Self-conditioning first pass (zero self-cond input) on the denoise rows that need it.
        use_sc = sc_host & ~dec_host
        guided = self.use_sc_cfg and c.self_cond_prob > 0
        if bool(use_sc.any()):
            idx = use_sc.nonzero().squeeze(1).to(x.device, non_blocking=True)
            with torch.no_grad():
                x_u, v_u = self._predict(helper, z[idx], d.t[idx], x_sc[idx], d.sc_cfg, idx, cond, x)
            x_sc = x_sc.index_copy(0, idx, x_u.to(x_sc.dtype))
            if guided:
                # SC-CFG target: v + (1 − 1/w)(v_cond − v_uncond), v_cond from the self-conditioned pass.
                with torch.no_grad():
                    _, v_c = self._predict(helper, z[idx], d.t[idx], x_u, d.sc_cfg, idx, cond, x)
                w = d.sc_cfg[idx].view(-1, 1, 1)
                v_target = v_target.index_add(0, idx, ((1 - 1 / w) * (v_c - v_u)).to(v_target.dtype))

        # The decode head runs on the decode rows only (possibly none: a 0-row matmul keeps every parameter
        # in the graph, which DDP needs).
        dec_idx = dec_host.nonzero().squeeze(1).to(x.device, non_blocking=True)
        out, logits = model(z_in, t_in, x_sc=x_sc, sc_cfg=d.sc_cfg, decode=dec.float(), return_logits=True,
                            logit_rows=dec_idx)
        _, v_pred = path.to_x_v(out, z, d.t)

        loss_mask = self.loss_mask(attention_mask, cond).float()
        ce_mask = loss_mask.index_select(0, dec_idx)
        ce = F.cross_entropy(logits.float().flatten(0, 1), input_ids.index_select(0, dec_idx).flatten(),
                             reduction="none").view_as(ce_mask)
        l2 = (v_pred.float() - v_target.float()).pow(2).mean(dim=-1)
        l2_mask = loss_mask * (~dec)[:, None].float()
        n = loss_mask.sum()
        loss = ((ce * ce_mask).sum() + (l2 * l2_mask).sum()) / n.clamp(min=1.0)
        with torch.no_grad():
            ce_mean = (ce * ce_mask).sum() / ce_mask.sum().clamp(min=1.0)
            l2_mean = (l2 * l2_mask).sum() / l2_mask.sum().clamp(min=1.0)
        return LossOutput(loss=loss, l2=l2_mean, ce=ce_mean, n_positions=n.detach())

    def _predict(self, model, z, t, x_sc, sc_cfg, idx, cond, x):
        """(x̂, v̂) of a denoise pass on the selected rows, condition positions restored to x."""
        return Denoiser(model, self.path).predict(z, t, x_sc=x_sc, sc_cfg=None if sc_cfg is None else sc_cfg[idx],
                                                  cond_x=x[idx], cond_mask=cond[idx])

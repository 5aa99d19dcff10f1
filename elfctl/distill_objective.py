"""The progressive-distillation objective of one round (DISTILLATION.md "One training step").

A round trains an N-step student against a frozen many-step teacher. Each example takes one branch:

* distillation (prob 1 − decoder_prob): times ``t_s = u·max(1 − h, 1e-6)``, ``t_t = t_s + h`` with ``h = 1/N``
  and u logit-normal; ``z_s = t_s·x + (1 − t_s)·s·ε``. The teacher takes K = teacher_steps / N Euler sub-steps
  from t_s to t_t (interior sub-step times drawn per row), feeding its own previous x̂ back as
  self-conditioning, and reaches ``z_teacher``. The student's target is the x̂ whose single Euler step lands
  there, ``x_tgt = z_s + (1 − t_s)/(t_t − t_s)·(z_teacher − z_s)`` (the teacher's last x̂ when the span is
  below 1e-3), and the loss is the x-space mean over channels of ``(x̂_student − x_tgt)²``;
* decode (prob decoder_prob): exactly the base objective's decode branch (t = 1, mode gate on, zero
  self-conditioning, cross-entropy).

Self-conditioning (prob self_cond_prob on distillation rows) feeds the TEACHER's x̂ at (z_s, t_s), from a pass
with a zero self-cond half, to both the student and the teacher's first sub-step. Student and teacher see the
same SC-CFG scale w (drawn as in base training); there is no explicit guidance term. The loss is a masked mean per
example, then a mean over examples (base training uses one token denominator instead).

The teacher runs under no_grad in eval mode (bf16 autocast on CUDA), only on the distillation rows: one batched
forward per sub-step for all of them, plus one for the self-conditioned rows' first x̂ (K + 1 forwards a row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.denoiser import Denoiser
from elfctl.flow import FlowPath, keep_condition, sample_time
from elfctl.objective import LossOutput, draw_branches

TINY_SPAN = 1e-3  # below this span the inversion divides by ~0: the target is the teacher's x̂ instead
MIN_START_ROOM = 1e-6  # t_s = u·max(1 − h, MIN_START_ROOM): the one-step round starts at t_s ≈ 0


@dataclass
class DistillDraws:
    """Every random quantity of one batch, drawn up front so tests can set them by hand."""

    t_s: torch.Tensor          # (B,) student start time (distillation rows)
    eps: torch.Tensor          # (B, L, C) noise of z_s
    sub_u: torch.Tensor        # (B, K − 1) sorted fractions of the span where the interior sub-steps fall
    decode_rows: torch.Tensor  # (B,) bool, CPU: example trains the decode branch
    lam: torch.Tensor          # (B, L, 1) decode-branch per-token signal fraction
    eps_dec: torch.Tensor      # (B, L, C) decode-branch noise (unit scale)
    sc_rows: torch.Tensor      # (B,) bool, CPU: distillation example self-conditions on the teacher's x̂
    sc_cfg: Optional[torch.Tensor]  # (B,) SC-CFG scale shared by student and teacher, or None


def sub_step_times(t_s: torch.Tensor, t_t: torch.Tensor, sub_u: torch.Tensor) -> torch.Tensor:
    """(B, K + 1) teacher sub-step grid ``[t_s, t_s + span·u_1, …, t_s + span·u_{K−1}, t_t]`` (u sorted)."""
    span = (t_t - t_s)[:, None]
    return torch.cat([t_s[:, None], t_s[:, None] + span * sub_u, t_t[:, None]], dim=1)


def student_x_target(z_s: torch.Tensor, z_end: torch.Tensor, t_s: torch.Tensor, t_t: torch.Tensor,
                     x_last: torch.Tensor) -> torch.Tensor:
    """The x̂ whose one Euler step z_s + (t_t − t_s)·(x̂ − z_s)/(1 − t_s) lands on ``z_end``.

    Rows whose span t_t − t_s is below ``TINY_SPAN`` take ``x_last`` (the teacher's last x̂) instead.
    """
    span = (t_t - t_s).view(-1, 1, 1)
    ratio = (1 - t_s).view(-1, 1, 1) / span.clamp(min=1e-6)
    target = z_s + ratio * (z_end - z_s)
    return torch.where(span < TINY_SPAN, x_last, target)


class DistillObjective:
    """The loss of one distillation round: an N-step student against a frozen teacher.

    Called like :class:`~elfctl.objective.ElfObjective` (the trainer cannot tell them apart).
    """

    def __init__(self, obj_cfg, teacher: nn.Module, *, student_steps: int, teacher_steps: int = 64,
                 prediction: str = "x", teacher_prediction: Optional[str] = None, use_sc_cfg: bool = True,
                 pad_token: str = "pad", sub_step_schedule: str = "logit_normal", teacher_bf16: bool = True):
        if teacher_steps % student_steps:
            raise ValueError(f"teacher_steps {teacher_steps} is not a multiple of student_steps {student_steps}")
        self.cfg = obj_cfg
        self.path = FlowPath(noise_scale=obj_cfg.noise_scale, t_eps=obj_cfg.t_eps, prediction=prediction)
        self.teacher_path = FlowPath(noise_scale=obj_cfg.noise_scale, t_eps=obj_cfg.t_eps,
                                     prediction=teacher_prediction or prediction)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student_steps = student_steps
        self.sub_steps = teacher_steps // student_steps  # K
        self.h = 1.0 / student_steps
        self.use_sc_cfg = use_sc_cfg
        self.pad_token = pad_token
        self.sub_step_schedule = sub_step_schedule
        self.teacher_bf16 = teacher_bf16
        self.teacher_denoiser = Denoiser(self.teacher, self.teacher_path, bf16=teacher_bf16)

    # ------------------------------------------------------------------ randomness
    def draw(self, x: torch.Tensor) -> DistillDraws:
        """Draw a batch's randomness from torch's global RNGs (seeded per step and shard by the trainer)."""
        c = self.cfg
        B, dev = x.shape[0], x.device
        u = sample_time(B, schedule=c.time_schedule, p_mean=c.p_mean, p_std=c.p_std, device=dev)
        t_s = u * max(1.0 - self.h, MIN_START_ROOM)
        eps = torch.randn_like(x)
        k = self.sub_steps - 1
        sub_u = sample_time(B * k, schedule=self.sub_step_schedule, p_mean=c.p_mean, p_std=c.p_std,
                            device=dev).view(B, k).sort(dim=1).values
        return DistillDraws(t_s, eps, sub_u, *draw_branches(c, x, self.use_sc_cfg))

    def loss_mask(self, attention_mask: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """Positions that carry loss: valid target tokens (pad=pad) or every target position (pad=eos)."""
        base = attention_mask.bool() if self.pad_token == "pad" else torch.ones_like(cond_mask, dtype=torch.bool)
        return base & ~cond_mask.bool()

    # ------------------------------------------------------------------ teacher
    def _teacher_x(self, z: torch.Tensor, t: torch.Tensor, x_sc: torch.Tensor, w: Optional[torch.Tensor],
                   x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The teacher's x̂ (fp32, condition restored) for a batch of rows: one forward."""
        return self.teacher_denoiser.predict(z, t, x_sc=x_sc, sc_cfg=w, cond_x=x, cond_mask=cond, velocity=False)[0]

    @torch.no_grad()
    def teacher_target(self, z_s: torch.Tensor, t_s: torch.Tensor, t_t: torch.Tensor, sub_u: torch.Tensor,
                       x_sc: torch.Tensor, w: Optional[torch.Tensor], x: torch.Tensor,
                       cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_tgt, z_teacher(t_t)) for distillation rows: K teacher Euler sub-steps from t_s to t_t.

        ``x_sc`` is the self-cond half of the first sub-step; later ones feed the teacher's previous x̂.
        """
        times = sub_step_times(t_s, t_t, sub_u)
        z = z_s.float()
        x_hat = None
        for k in range(self.sub_steps):
            t, t_next = times[:, k], times[:, k + 1]
            x_hat = self._teacher_x(z, t, x_sc, w, x, cond)
            v = self.teacher_path.velocity(x_hat, z, t)
            z = keep_condition(z + (t_next - t).view(-1, 1, 1) * v, x, cond)
            x_sc = x_hat
        return student_x_target(z_s.float(), z, t_s, t_t, x_hat), z

    # ------------------------------------------------------------------ loss
    def __call__(self, model: nn.Module, x: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 cond_mask: torch.Tensor, *, draws: Optional[DistillDraws] = None,
                 drop_cond: Optional[torch.Tensor] = None, key_mask: Optional[torch.Tensor] = None,
                 helper_model: Optional[nn.Module] = None) -> LossOutput:
        """Loss of one batch (same arguments as the base objective; ``drop_cond``, ``key_mask`` and
        ``helper_model`` are accepted for that and unused: distillation is unconditional and every helper pass
        here is the teacher's)."""
        d = draws if draws is not None else self.draw(x)
        path, c = self.path, self.cfg
        B = x.shape[0]
        dev = x.device
        cond = cond_mask.bool()
        # host -> device copies of the CPU-drawn row choices never wait for the device (as in the base objective)
        dec = d.decode_rows.to(dev, non_blocking=True)
        dist_cpu = ~d.decode_rows
        dist_idx = dist_cpu.nonzero().squeeze(1).to(dev, non_blocking=True)
        t_t = d.t_s + self.h
        z_s = path.interpolate(x, d.eps, d.t_s, cond)
        z_dec = d.lam * x + (1 - d.lam) * c.decoder_noise_scale * d.eps_dec

        # Teacher: its x̂ at (z_s, t_s) for the self-conditioned rows, then the K sub-steps for every
        # distillation row, all in one batched forward per pass.
        x_sc = keep_condition(torch.zeros_like(x), x, cond)
        x_tgt = torch.zeros_like(x)
        if len(dist_idx):
            sel = lambda a: None if a is None else a.index_select(0, dist_idx)  # noqa: E731
            zr, tr, xr, cr, wr = sel(z_s), sel(d.t_s), sel(x), sel(cond), sel(d.sc_cfg)
            sc_first = sel(x_sc)
            sc_local = d.sc_rows[dist_cpu]  # CPU bool over the distillation rows
            if bool(sc_local.any()):
                li = sc_local.nonzero().squeeze(1).to(dev, non_blocking=True)
                with torch.no_grad():
                    x0 = self._teacher_x(zr[li], tr[li], sc_first[li], None if wr is None else wr[li], xr[li],
                                         cr[li])
                sc_first = sc_first.index_copy(0, li, x0.to(sc_first.dtype))
            tgt, _ = self.teacher_target(zr, tr, sel(t_t), sel(d.sub_u), sc_first, wr, xr, cr)
            x_sc = x_sc.index_copy(0, dist_idx, sc_first)
            x_tgt = x_tgt.index_copy(0, dist_idx, tgt.to(x_tgt.dtype))
        # Decode rows: an entirely zero self-cond half, as in base training and at sampling.
        x_sc = torch.where(dec[:, None, None], torch.zeros_like(x_sc), x_sc)

        # Student: one forward for every row; the decode head only on the decode rows.
        z_in = torch.where(dec[:, None, None], z_dec, z_s)
        t_in = torch.where(dec, torch.ones_like(d.t_s), d.t_s)
        dec_idx = d.decode_rows.nonzero().squeeze(1).to(dev, non_blocking=True)
        out, logits = model(z_in, t_in, x_sc=x_sc, sc_cfg=d.sc_cfg, decode=dec.float(), return_logits=True,
                            logit_rows=dec_idx)
        x_pred, _ = path.to_x_v(out, z_s, d.t_s)

        mask = self.loss_mask(attention_mask, cond).float()
        per_pos_l2 = (x_pred.float() - x_tgt.float()).pow(2).mean(dim=-1)
        denom = mask.sum(dim=1).clamp(min=1.0)
        l2_ex = (per_pos_l2 * mask).sum(dim=1) / denom  # (B,)
        ce_mask = mask.index_select(0, dec_idx)
        ce = F.cross_entropy(logits.float().flatten(0, 1), input_ids.index_select(0, dec_idx).flatten(),
                             reduction="none").view_as(ce_mask)
        ce_ex = (ce * ce_mask).sum(dim=1) / ce_mask.sum(dim=1).clamp(min=1.0)  # (R,)
        per_example = torch.where(dec, torch.zeros_like(l2_ex), l2_ex).index_add(0, dec_idx, ce_ex)
        loss = per_example.mean()
        with torch.no_grad():
            n_dec = len(dec_idx)
            l2_mean = (l2_ex * (~dec).float()).sum() / max(B - n_dec, 1)
            ce_mean = ce_ex.sum() / max(n_dec, 1)
        return LossOutput(loss=loss, l2=l2_mean, ce=ce_mean, n_positions=mask.sum().detach())

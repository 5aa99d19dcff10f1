"""MDLM's training loss: the continuous-time NELBO of absorbing-state diffusion, per valid token.

For a batch of token ids x with valid-token mask a (pads are corrupted like the rest but carry no loss):

    t_b ~ stratified over the batch,  z_t = x with each token masked w.p. 1 - alpha_t,
    L_{b,i} = w(t_b) · (-log p_theta(x_i | z_t)) · 1[z_t,i = m],        w(t) = 1/t,
    loss = sum_{b,i} a_{b,i} L_{b,i} / sum_{b,i} a_{b,i}.

The denominator counts every valid position, not only the masked ones: this is the NELBO per token, an upper
bound on -log p(x) per token in expectation. Unmasked positions give 0 (SUBS carries them over), so the network's
head runs on the masked valid positions only (``rows``: the same loss and gradient, about half the head's compute). There is no prior term, and the reconstruction term is 0
under SUBS.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.families.mdlm.masking import LogLinearSchedule, corrupt, masked_log_probs, training_times
from elfctl.objective import LossOutput


class MdlmObjective:
    def __init__(self, mask_id: int, *, eps: float = 1e-3, stratified_t: bool = True, pad_token: str = "pad"):
        self.mask_id, self.schedule = mask_id, LogLinearSchedule(eps)
        self.stratified, self.pad_token = stratified_t, pad_token

    @classmethod
    def from_config(cls, cfg, mask_id: int) -> "MdlmObjective":
        return cls(mask_id, eps=cfg.mdlm.eps, stratified_t=cfg.mdlm.stratified_t, pad_token=cfg.data.pad_token)

    def valid(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Positions that carry loss: real tokens (pad=pad) or every position (pad=eos). A [MASK] token in the data
        itself could never be predicted (p([MASK]) = 0), so it carries none either."""
        a = attention_mask.bool() if self.pad_token == "pad" else torch.ones_like(input_ids, dtype=torch.bool)
        return a & (input_ids != self.mask_id)

    def draw(self, input_ids: torch.Tensor, t: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t (B,), z_t (B, L)) from torch's global RNG (seeded per step and shard by the trainer)."""
        B = input_ids.shape[0]
        if t is None:
            t = training_times(B, self.schedule.eps, stratified=self.stratified, device=input_ids.device)
        return t, corrupt(input_ids, 1 - self.schedule.alpha(t), self.mask_id)

    def token_terms(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    t: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Sums over one batch: ``loss`` (of a·L), ``valid`` (tokens), ``masked`` (valid masked tokens) and ``nll``
        (their unweighted -log p, detached). Give ``t`` and ``z`` to set the draws by hand."""
        if z is None:
            t, z = self.draw(input_ids, t)
        a = self.valid(input_ids, attention_mask)
        sel = (z == self.mask_id) & a
        rows = sel.flatten().nonzero().squeeze(1)
        logp = masked_log_probs(model(z, self.schedule.sigma(t), rows=rows), self.mask_id)  # (R, V): masked only
        nll = F.nll_loss(logp, input_ids.flatten().index_select(0, rows), reduction="none")
        w = self.schedule.weight(t)[:, None].expand_as(sel).flatten().index_select(0, rows)
        return {"loss": (w * nll).sum(), "valid": a.sum(), "masked": sel.sum(), "nll": nll.detach().sum()}

    def __call__(self, model: nn.Module, x, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 cond_mask: torch.Tensor, *, drop_cond=None, helper_model=None, t: Optional[torch.Tensor] = None,
                 z: Optional[torch.Tensor] = None) -> LossOutput:
        """Loss of one batch, with the trainer's call signature (``x``, the latents, is None for this family).
        ``ce`` reports the unweighted -log p per masked token, ``l2`` is 0 (there is no flow term)."""
        s = self.token_terms(model, input_ids, attention_mask, t, z)
        n = s["valid"].clamp(min=1)
        return LossOutput(loss=s["loss"] / n, l2=torch.zeros((), device=n.device),
                          ce=s["nll"] / s["masked"].clamp(min=1), n_positions=s["valid"].detach().float())

"""Optimisers, learning-rate schedule and EMA of the weights.

``muon``: ``torch.optim.Muon`` for the 2-D weight matrices of the network, and Nesterov-Adam for everything
else (biases, norms, prefix tokens, learned token embeddings). Nesterov-Adam is ``torch.optim.NAdam`` with a
huge ``momentum_decay``: its momentum warm-up factor then equals beta1 from the first step, which is exactly
the bias-corrected Nesterov-Adam of the authors' code. Muon's own update follows torch's implementation
(Keller Jordan's shape scaling sqrt(max(1, fan_out / fan_in)), no Nesterov bias correction), with the
Newton–Schulz iteration in fp32 and eps 1e-8 as the authors patch it (:class:`Fp32Muon`);
``optim.muon_ns_dtype: bfloat16`` uses ``torch.optim.Muon`` itself (bf16, eps 1e-7).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn as nn

NADAM_MOMENTUM_DECAY = 1e6  # makes NAdam's mu_t == beta1 for every t >= 1
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton–Schulz (Keller Jordan's; torch's and the authors')
NS_STEPS = 5


def lr_factor(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warm-up, then constant/cosine."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def _split_params(modules: Iterable[nn.Module], vocab_head: bool = True) -> tuple[list, list]:
    """(matrices for Muon, everything else). Embedding tables are not treated as matrices; the vocabulary
    projection (``unembed``) is one unless ``vocab_head`` is False."""
    matrices, others = [], []
    for module in modules:
        excluded = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
        unembed = getattr(module, "unembed", None)
        if not vocab_head and isinstance(unembed, nn.Linear):
            excluded.add(id(unembed.weight))
        for p in module.parameters():
            if not p.requires_grad:
                continue
            (matrices if p.ndim == 2 and id(p) not in excluded else others).append(p)
    return matrices, others


def newton_schulz(g: torch.Tensor, steps: int = NS_STEPS, eps: float = 1e-8,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Approximate orthogonalisation of a 2-D matrix (U S' V^T with S' near 1), computed in ``dtype``."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + eps)  # spectral norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Fp32Muon(torch.optim.Optimizer):
    """``torch.optim.Muon``'s update with the authors' Newton–Schulz: fp32 and eps 1e-8 instead of bf16 and 1e-7.

    Same state (``momentum_buffer``) and hyper-parameters as torch's, so checkpoints move between the two.
    """

    def __init__(self, params, lr: float, weight_decay: float, momentum: float, nesterov: bool = True,
                 ns_steps: int = NS_STEPS, eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                update = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_steps"], group["eps"])
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-lr * math.sqrt(max(1.0, p.shape[0] / p.shape[1])))
        return None


class Optimizers:
    """One or two torch optimizers stepped together, with one lr schedule."""

    def __init__(self, optim_cfg, modules: list[nn.Module], *, lr: float, total_steps: int,
                 warmup_steps: Optional[int] = None):
        """``warmup_steps``: resolved warm-up (default ``optim.warmup_steps``; see ``elfctl.train.length``)."""
        self.cfg = optim_cfg
        self.lr = lr
        self.total_steps = total_steps
        self.warmup_steps = optim_cfg.warmup_steps if warmup_steps is None else warmup_steps
        c = optim_cfg
        if c.optimizer == "muon":
            matrices, others = _split_params(modules, c.muon_vocab_head)
            muon = (Fp32Muon if c.muon_ns_dtype == "float32" else torch.optim.Muon)(
                matrices, lr=lr, weight_decay=c.weight_decay, momentum=c.muon_momentum, nesterov=True)
            self.optimizers = [
                muon,
                torch.optim.NAdam(others, lr=lr, betas=(c.adam_b1, 0.999), eps=1e-8,
                                  weight_decay=c.weight_decay, decoupled_weight_decay=True,
                                  momentum_decay=NADAM_MOMENTUM_DECAY),
            ]
        else:
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            # fused: one kernel over all parameters (8x faster than the per-tensor loop on a CPU)
            fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
            self.optimizers = [torch.optim.AdamW(params, lr=lr, betas=(c.adam_b1, c.adam_b2),
                                                 weight_decay=c.weight_decay, fused=fused or None)]
        self.set_step(0)

    def set_step(self, step: int) -> float:
        """Set every group's lr for optimizer step ``step``; returns that lr."""
        c = self.cfg
        lr = self.lr * lr_factor(step, warmup=self.warmup_steps, total=self.total_steps, schedule=c.schedule,
                                 min_ratio=c.min_lr_ratio)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)


def ema_decay_at(decay: float, count: int, warmup: bool) -> float:
    """The EMA decay of update number ``count`` (1-based): ``decay``, or with ``warmup`` MDLM's
    min(decay, (1 + count) / (10 + count)), which lets the average forget its random start quickly."""
    return min(decay, (1 + count) / (10 + count)) if warmup else decay


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied as they are)."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.names = [n for n, _ in module.named_parameters()]
        self.shadow = [p.detach().clone().float() for p in module.parameters()]

    @torch.no_grad()
    def update(self, module: nn.Module, count: int) -> None:
        """Fold in the current weights; ``count``: this update's number (1 for the first optimizer step: a resumed
        run passes its step, so the warm-up continues where it was)."""
        params = [p.detach().float() for p in module.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - ema_decay_at(self.decay, count, self.warmup))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, name in enumerate(self.names):
            self.shadow[i].copy_(state[name])

"""Model FLOPs of an ELF training step, counted from the passes that actually run (for MFU).

A step of the objective (``elfctl.objective``) runs, on a batch of B rows of length L:

* the trained pass on all B rows, forward and backward, with the decode head (``decode_proj`` and the
  vocabulary projection ``unembed``) only on the decode-branch rows (``logit_rows``);
* up to two no-grad helper passes (self-conditioning, then SC-CFG) on the self-conditioned denoise rows,
  forward only and without the decode head.

Every pass runs its transformer blocks on L + P tokens (P prefix tokens: time, SC-CFG and mode tokens, 12
for the paper's models), its input projections and flow head on the L sequence tokens, and its time / SC-CFG
embedders once per row. A matmul of an (m, k) by a (k, n) matrix is 2·m·k·n FLOPs; attention is 4·N²·D per
block and row forward (QKᵀ and AV); a backward is twice its forward, except that no input gradient is formed
for the layers whose input needs none (``sc_proj`` on the latents, the embedders' first layers on the
sinusoidal features). Elementwise work (norms, RoPE, softmax, losses) is not counted, nor the recomputation of
gradient checkpointing: this is model FLOPs, the convention of MFU. ``tests/test_gpu_path.py`` checks the count
against a hand count and against ``torch.utils.flop_counter`` on a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


def _macs(layer: nn.Linear) -> int:
    return layer.in_features * layer.out_features


@dataclass(frozen=True)
class PassFlops:
    """Forward FLOPs of one pass, split by what they scale with; backward counts derived from them."""

    per_row: int          # embedders: once per row
    per_token: int        # input projections and flow head: per sequence token
    per_block_token: int  # block linears: per token of L + P, all blocks
    attention: int        # all blocks, one row: 4·N²·D each
    decode_per_token: int  # decode head: per sequence token of a decode row
    no_input_grad: int    # forward FLOPs (per row, incl. tokens) of layers whose input needs no gradient


def pass_flops(model, length: int) -> PassFlops:
    """Forward FLOPs of one row of length ``length`` through ``model`` (an :class:`elfctl.model.ELF`)."""
    n = length + model.num_prefix
    embedders = [e for e in (model.time_embed, model.sc_cfg_embed) if e is not None]
    per_row = 2 * sum(_macs(e.fc1) + _macs(e.fc2) for e in embedders)
    per_token = 2 * (_macs(model.sc_proj) + _macs(model.in_proj1) + _macs(model.in_proj2) + _macs(model.flow_head))
    block_linears = sum(_macs(m) for b in model.blocks for m in b.modules() if isinstance(m, nn.Linear))
    attention = sum(4 * n * n * b.attn.qkv.in_features for b in model.blocks)
    decode = 2 * (_macs(model.decode_proj) + _macs(model.unembed))
    no_input_grad = 2 * (length * _macs(model.sc_proj) + sum(_macs(e.fc1) for e in embedders))
    return PassFlops(per_row, per_token, 2 * block_linears, attention, decode, no_input_grad)


def forward_flops(model, rows: int, length: int, logit_rows: int = 0) -> int:
    """Forward FLOPs of ``rows`` rows, with the decode head on ``logit_rows`` of them."""
    p = pass_flops(model, length)
    n = length + model.num_prefix
    trunk = p.per_row + length * p.per_token + n * p.per_block_token + p.attention
    return rows * trunk + logit_rows * length * p.decode_per_token


def backward_flops(model, rows: int, length: int, logit_rows: int = 0) -> int:
    """Backward FLOPs of the same pass: weight and input gradients (2× forward) less the input gradients that
    are never formed."""
    no_input_grad = pass_flops(model, length).no_input_grad
    return 2 * forward_flops(model, rows, length, logit_rows) - rows * no_input_grad


@dataclass(frozen=True)
class StepFlops:
    trained: int   # forward + backward of the trained pass
    helper: int    # forward of the helper passes

    @property
    def total(self) -> int:
        return self.trained + self.helper


def step_flops(model, rows: int, length: int, *, decode_rows: int, helper_rows: int, helper_passes: int
               ) -> StepFlops:
    """FLOPs of one objective step: B = ``rows``; ``decode_rows`` decode-branch rows; ``helper_passes``
    (0, 1 or 2) no-grad passes over ``helper_rows`` self-conditioned denoise rows each."""
    fwd = forward_flops(model, rows, length, decode_rows)
    trained = fwd + backward_flops(model, rows, length, decode_rows)
    return StepFlops(trained, helper_passes * forward_flops(model, helper_rows, length))


def naive_step_flops(n_params: int, rows: int, length: int) -> int:
    """The usual 6·N per sequence token (what this module replaces), for comparison."""
    return 6 * n_params * rows * length

"""``train.compile``: ``torch.compile`` each transformer block in place, not the whole network.

Why per block, rather than ``torch.compile(model)``:

* DDP and FSDP2 keep their communication overlap. ``DDP(torch.compile(model))`` hands DDP one opaque graph
  whose gradients all appear at the end of the backward, so the all-reduce buckets cannot start early; with
  compiled blocks inside ``DDP(model)`` each block's gradients are ready when its backward ends, as in eager.
  FSDP2 likewise gathers and reshards per block around compiled block bodies (its hooks are not traced: dynamo
  runs them eagerly at the block boundary, as PyTorch's own FSDP2 compile tests do).
* Nothing of data-dependent size enters a compiled graph. The decode head runs on the decode-branch rows only
  (``logit_rows``, a different count every step) and the helper passes on the self-conditioned rows: a whole-model
  graph would be recompiled for new counts. Blocks see (rows, L + P, hidden); a new row count (helper passes)
  makes dynamo mark the batch dimension dynamic after the first recompile, and then it stays.
* Identical blocks share one compiled graph (their parameters are graph inputs), so compile time does not grow
  with depth.
* State-dict keys do not change (``nn.Module.compile`` compiles in place: no ``_orig_mod.`` prefix), so
  checkpoints, the EMA and FSDP's state-dict helpers are the same with or without ``train.compile``.

The helper passes (no-grad) run through the same compiled blocks as the trained pass (in the trainer and in
``benchmarks/bench_train.py`` alike); grad mode is part of dynamo's guards, so each mode has its own graph.
"""

from __future__ import annotations

import torch.nn as nn


def compile_blocks(model: nn.Module, **compile_kwargs) -> int:
    """Compile every block of ``model.blocks`` in place; returns how many."""
    for block in model.blocks:
        block.compile(**compile_kwargs)
    return len(model.blocks)


def is_compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None

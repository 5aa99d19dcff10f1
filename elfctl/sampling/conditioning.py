"""Pinned positions for sampling: prompts of conditional models, and prefix/suffix infilling.

Conditional prompt: the sequence is laid out as in training, ``[c + eos ; target]``; the condition block is
encoded with condition-only attention (as in training) and pinned; CFG applies to it.

Infilling (unconditional models): ``prefix + [middle to generate] + suffix + eos``. The pinned tokens are
encoded together as one short sequence (prefix, suffix, eos) and their latents placed at their positions; the
middle length defaults to whatever room is left. CFG does not apply (there was no label drop).
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from elfctl.data.tokenize import SequenceBuilder, encoder_attention_mask, eos_id, token_ids
from elfctl.errors import ConfigError
from elfctl.sampling.sampler import Condition


def prompt_condition(texts: list[str], tokenizer, encoder, data_cfg, device, *, truncate: bool = False) -> Condition:
    builder = SequenceBuilder(tokenizer, data_cfg)
    room = min(data_cfg.max_input_length or data_cfg.max_length - 1, data_cfg.max_length - 1) - 1
    items = []
    for i, text in enumerate(texts):
        n = len(token_ids(tokenizer, text))
        if n > room:
            if not truncate:
                raise ConfigError(f"prompt {i}: {n} tokens, but the model's condition holds at most {room} "
                                  f"(data.max_input_length); shorten it or pass --truncate")
            warnings.warn(f"prompt {i}: truncated from {n} to {room} tokens", stacklevel=2)
        items.append(builder.pair(text, ""))
    batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    with torch.no_grad():
        lat = encoder(batch["input_ids"], encoder_attention_mask(batch["attention_mask"], batch["cond_mask"]))
    return Condition(lat.float(), batch["cond_mask"].bool(), guided=True)


def infill_condition(prefix: str, suffix: str, n: int, tokenizer, encoder, length: int, device,
                     middle: Optional[int] = None) -> tuple[Condition, dict]:
    pre = token_ids(tokenizer, prefix) if prefix else []
    suf = (token_ids(tokenizer, suffix) if suffix else []) + ([eos_id(tokenizer)] if suffix else [])
    free = length - len(pre) - len(suf)
    if free < 1:
        raise ConfigError(f"--prefix/--suffix: {len(pre) + len(suf)} pinned tokens leave no room in a sequence of "
                          f"{length} tokens")
    middle = free if middle is None else middle
    if not 1 <= middle <= free:
        raise ConfigError(f"--infill-length: must be between 1 and {free}")
    pinned = pre + suf
    ids = torch.tensor([pinned], device=device)
    with torch.no_grad():
        lat_pinned = encoder(ids, torch.ones(1, len(pinned), dtype=torch.bool, device=device))[0]
    C = lat_pinned.shape[-1]
    latents = torch.zeros(length, C, device=device)
    mask = torch.zeros(length, dtype=torch.bool, device=device)
    latents[: len(pre)] = lat_pinned[: len(pre)]
    mask[: len(pre)] = True
    start = len(pre) + middle
    latents[start:start + len(suf)] = lat_pinned[len(pre):]
    mask[start:start + len(suf)] = True
    layout = {"prefix_ids": pre, "suffix_ids": suf, "middle_start": len(pre), "middle_len": middle}
    return Condition(latents.expand(n, -1, -1).clone(), mask.expand(n, -1).clone(), guided=False), layout

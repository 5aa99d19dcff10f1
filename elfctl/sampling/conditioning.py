"""Pinned positions for sampling: prompts of conditional models, and prefix/suffix infilling.

Conditional prompt: the sequence is laid out as the run was trained (``data.cond_layout``: ``[c ; target]``, or
``[c + eos ; target]``), so condition tokens past ``max_input_length`` are cut as in training; the condition block is
encoded with condition-only attention (as in training: ``encoder_attention_mask``) and pinned; CFG applies to it.
Key padding needs no mask: conditional data uses eos as its pad token.

Infilling (unconditional models): ``prefix + [middle to generate] + suffix + eos``. The pinned tokens are placed
at their positions in a full-length sequence and encoded attending to pinned tokens only (like a condition), so
their latents carry the right positions and no made-up context; they stay clean throughout sampling. The middle
length defaults to all the room left. CFG does not apply (there was no label drop to learn an unconditional).
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch

from elfctl.data.tokenize import (SequenceBuilder, condition_room, encoder_attention_mask, eos_id, pad_id,
                                  token_ids)
from elfctl.errors import ConfigError
from elfctl.sampling.sampler import Condition


def _warn(msg: str) -> None:
    warnings.warn(msg, stacklevel=3)


def prompt_condition(texts: list[str], tokenizer, encoder, data_cfg, device, *, truncate: bool = False,
                     warn: Optional[Callable[[str], None]] = None) -> Condition:
    """Condition latents (B, L, C) and mask (B, L) for prompts; too-long prompts: ConfigError or truncation."""
    builder = SequenceBuilder(tokenizer, data_cfg)
    room = condition_room(data_cfg)
    items = []
    for i, text in enumerate(texts):
        n = len(token_ids(tokenizer, text))
        if n > room:
            if not truncate:
                raise ConfigError(f"prompt {i}: {n} tokens, but this model's condition holds at most {room} "
                                  f"(data.max_input_length / data.max_length); shorten it or pass --truncate")
            (warn or _warn)(f"prompt {i}: truncated from {n} to {room} tokens")
        items.append(builder.pair(text, ""))  # target: a placeholder; only the condition block is used
    batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    with torch.no_grad():
        lat = encoder(batch["input_ids"], encoder_attention_mask(batch["attention_mask"], batch["cond_mask"]))
    return Condition(lat.float(), batch["cond_mask"].bool(), guided=True)


def infill_condition(prefix: str, suffix: str, n: int, tokenizer, encoder, data_cfg, device,
                     middle: Optional[int] = None) -> tuple[Condition, dict]:
    """Pinned prefix / suffix(+eos) latents for ``n`` rows, and the layout needed to rebuild the text."""
    length = data_cfg.max_length
    pre = token_ids(tokenizer, prefix) if prefix else []
    suf = (token_ids(tokenizer, suffix) + [eos_id(tokenizer)]) if suffix else []
    free = length - len(pre) - len(suf)
    if free < 1:
        raise ConfigError(f"--prefix/--suffix: {len(pre) + len(suf)} pinned tokens leave no room in a sequence of "
                          f"{length} tokens (data.max_length)")
    middle = free if middle is None else middle
    if not 1 <= middle <= free:
        raise ConfigError(f"--infill-length: {middle} is out of range; must be between 1 and {free}")
    start = len(pre) + middle  # the suffix follows the middle; anything after it is generated freely
    fill = eos_id(tokenizer) if data_cfg.pad_token == "eos" else pad_id(tokenizer)
    ids = torch.full((1, length), fill, dtype=torch.long)
    mask = torch.zeros(1, length, dtype=torch.bool)
    ids[0, : len(pre)] = torch.tensor(pre, dtype=torch.long)
    mask[0, : len(pre)] = True
    ids[0, start:start + len(suf)] = torch.tensor(suf, dtype=torch.long)
    mask[0, start:start + len(suf)] = True
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():  # pinned tokens attend to pinned tokens only, at their own positions
        lat = encoder(ids, encoder_attention_mask(torch.ones_like(mask), mask)).float()
    lat = torch.where(mask[..., None], lat, torch.zeros_like(lat))
    layout = {"prefix_ids": pre, "suffix_ids": suf, "middle_start": len(pre), "middle_len": middle}
    return Condition(lat.expand(n, -1, -1).clone(), mask.expand(n, -1).clone(), guided=False), layout


def infill_text_ids(ids: list[int], layout: dict, eos: int) -> tuple[list[int], list[int]]:
    """(middle ids cut at its first eos, full ids prefix + middle + suffix) of one generated sequence."""
    mid = ids[layout["middle_start"]:layout["middle_start"] + layout["middle_len"]]
    if eos in mid:
        mid = mid[: mid.index(eos)]
    return mid, layout["prefix_ids"] + mid + layout["suffix_ids"]

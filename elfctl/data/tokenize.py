"""Tokenizers and fixed-length sequences with the masks of ELF-METHOD §1.

Every example becomes three tensors of length ``data.max_length``:
``input_ids``; ``attention_mask`` (real tokens, padding excluded whatever the pad token: the encoder's keys,
and the loss positions under ``pad_token: pad``); ``cond_mask`` (condition positions).

* unconditional: ``text + [eos]``, then padded (``pad_token: pad``: pad id, not valid) or packed windows;
* conditional, ``cond_layout: authors`` (the default; the authors' collate function): ``[c[:max_input_length] ;
  y]`` with nothing added, cut to ``max_length``; ``attention_mask`` = the ids kept, ``cond_mask`` = the condition
  kept. An empty target leaves the condition alone; a target that overflows is cut with no closing eos.
* conditional, ``cond_layout: eos`` (elfctl's earlier layout, for runs trained with it): ``[c + eos ; y + eos]``,
  the condition (with its eos) first truncated to ``max_input_length``, then the target cut so the whole sequence
  fits ``max_length`` (a cut text always keeps its closing eos).
* Conditional padding is eos (``pad_token: eos``: the loss covers every target position, so the model learns to
  emit eos runs, but the padding is never a key for the encoder, as in the authors' code) or pad.

Special tokens: texts are tokenized with ``add_special_tokens=False`` (as the authors tokenize condition and target)
and any eos is appended here, so every tokenizer behaves alike. BERT-style tokenizers get no [CLS]; their [SEP] serves as eos (and [PAD] as pad). T5's
``</s>`` is its eos. A tokenizer without a pad token (GPT-2) pads with eos, still masked out under ``pad``.
An example counts as truncated when any of its tokens were cut (``Stats.truncated``); conditional examples also
count their cut conditions and cut targets (``Stats.cond_truncated``, ``Stats.target_truncated``), which
:meth:`Stats.summary` reports in one line.

Texts are tokenized with ``verbose=False``: a text longer than the tokenizer's ``model_max_length`` is cut here to
``max_length``, so transformers' "sequence length is longer than the maximum" warning would be noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from elfctl.data.assets import resolve_asset
from elfctl.errors import ConfigError


def load_tokenizer(encoder_cfg, data_dir: Optional[str] = None):
    """The tokenizer named by ``encoder.tokenizer`` (default: the encoder's own source)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = encoder_cfg.tokenizer or encoder_cfg.source
    path = resolve_asset(source, data_dir=data_dir)
    try:
        if path.is_file() and path.name.endswith(".json"):
            tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
        elif (path / "config.json").is_file() or (path / "tokenizer_config.json").is_file():
            tok = AutoTokenizer.from_pretrained(str(path))
        elif (path / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
        elif (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
            from transformers import GPT2TokenizerFast

            tok = GPT2TokenizerFast(vocab_file=str(path / "encoder.json"), merges_file=str(path / "vocab.bpe"))
        else:
            raise ConfigError(f"encoder.tokenizer: no tokenizer files in {path} (expected tokenizer.json, "
                              f"tokenizer_config.json or encoder.json + vocab.bpe)")
    except (OSError, ValueError) as e:
        raise ConfigError(f"encoder.tokenizer: cannot load a tokenizer from {path}: {e}") from None
    return tok


def eos_id(tok) -> int:
    for name in ("eos_token_id", "sep_token_id"):
        v = getattr(tok, name, None)
        if v is not None:
            return int(v)
    raise ConfigError("the tokenizer has neither an eos nor a sep token; ELF needs one to end sequences")


def pad_id(tok) -> int:
    v = getattr(tok, "pad_token_id", None)
    return int(v) if v is not None else eos_id(tok)


def token_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False, verbose=False)["input_ids"]


def batch_token_ids(tok, texts: list[str], chunk: int = 1024) -> list[list[int]]:
    """Token ids of many texts; one tokenizer call per chunk (fast tokenizers then work in parallel)."""
    out: list[list[int]] = []
    for i in range(0, len(texts), chunk):
        out += tok(texts[i:i + chunk], add_special_tokens=False, verbose=False)["input_ids"]
    return out


@dataclass
class Stats:
    examples: int = 0
    tokens: int = 0
    truncated: int = 0
    skipped: int = 0  # records dropped before tokenizing (blank text, blank condition or target)
    cond_truncated: int = 0    # conditional: conditions cut to fit max_input_length / max_length
    target_truncated: int = 0  # conditional: targets cut to fit max_length after their condition

    def summary(self, data_cfg) -> str:
        """One line: how many examples were cut, and (conditional) which part."""
        if data_cfg.task == "conditional":
            eos = data_cfg.cond_layout == "eos"
            room = condition_room(data_cfg) + int(eos)
            return (f"{self.cond_truncated} of {self.examples} inputs truncated to {room} tokens "
                    f"(data.max_input_length{', eos included' if eos else ''}), {self.target_truncated} targets "
                    f"truncated to fit "
                    f"max_length {data_cfg.max_length}, {self.skipped} blank skipped")
        return f"{self.truncated} truncated to max_length {data_cfg.max_length}, {self.skipped} blank skipped"


def condition_room(data_cfg) -> int:
    """Condition tokens a conditional example keeps: ``max_input_length`` (default: all but one position), less
    the condition's closing eos under ``cond_layout: eos``."""
    room = min(data_cfg.max_input_length or data_cfg.max_length - 1, data_cfg.max_length - 1)
    return room - 1 if data_cfg.cond_layout == "eos" else room


class SequenceBuilder:
    """Turns texts (or condition/target pairs) into fixed-length ``input_ids / attention_mask / cond_mask``."""

    def __init__(self, tok, data_cfg):
        self.tok, self.cfg = tok, data_cfg
        self.L = data_cfg.max_length
        self.eos, self.pad = eos_id(tok), pad_id(tok)
        self.fill = self.eos if data_cfg.pad_token == "eos" else self.pad
        self.stats = Stats()

    def _finish(self, ids: list[int], n_cond: int) -> dict[str, torch.Tensor]:
        L = self.L
        n_valid = len(ids)
        ids = ids + [self.fill] * (L - n_valid)
        am = torch.zeros(L, dtype=torch.bool)
        am[:n_valid] = True  # real tokens only, also with eos as pad (its loss mask is in the objective)
        cm = torch.zeros(L, dtype=torch.bool)
        cm[:n_cond] = True
        self.stats.examples += 1
        self.stats.tokens += n_valid
        return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": am, "cond_mask": cm}

    def text(self, text: str, ids: Optional[list[int]] = None) -> dict[str, torch.Tensor]:
        ids = token_ids(self.tok, text) if ids is None else ids
        if len(ids) > self.L - 1:
            ids = ids[: self.L - 1]
            self.stats.truncated += 1
        return self._finish(ids + [self.eos], 0)

    def pair(self, cond: str, target: str, c: Optional[list[int]] = None,
             y: Optional[list[int]] = None) -> dict[str, torch.Tensor]:
        c = token_ids(self.tok, cond) if c is None else list(c)
        y = token_ids(self.tok, target) if y is None else list(y)
        close = [self.eos] if self.cfg.cond_layout == "eos" else []
        room_c = condition_room(self.cfg)
        cut_c = len(c) > room_c
        c = c[:room_c] + close
        room_y = self.L - len(c) - len(close)  # >= 0: the condition (with any eos) is at most L - 1 tokens
        cut_y = len(y) > room_y
        y = y[:room_y] + close  # under eos, a cut target keeps its closing eos, as an unconditional text does
        self.stats.truncated += int(cut_c or cut_y)
        self.stats.cond_truncated += int(cut_c)
        self.stats.target_truncated += int(cut_y)
        return self._finish(c + y, len(c))

    def packed(self, texts) -> list[dict[str, torch.Tensor]]:
        """Concatenate texts with eos separators and cut into full windows (the last partial one is dropped)."""
        out, buf = [], []
        for ids in batch_token_ids(self.tok, list(texts)):
            buf += ids + [self.eos]
            while len(buf) >= self.L:
                window, buf = buf[: self.L], buf[self.L:]
                am = torch.ones(self.L, dtype=torch.bool)
                out.append({"input_ids": torch.tensor(window), "attention_mask": am,
                            "cond_mask": torch.zeros(self.L, dtype=torch.bool)})
                self.stats.examples += 1
                self.stats.tokens += self.L
        return out


def encoder_attention_mask(attention_mask: torch.Tensor, cond_mask: torch.Tensor,
                           drop_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, L, L) bool: may query token i attend to key j in the text encoder?

    Condition rows attend to valid condition columns only; every other row attends to every valid column —
    except in rows of ``drop_cond`` examples, where they do not see the condition (label drop for CFG).
    """
    valid = attention_mask.bool()
    cond = cond_mask.bool() & valid
    cond_rows = cond[:, :, None] & cond[:, None, :]
    other_cols = valid
    if drop_cond is not None:
        other_cols = valid & ~(drop_cond.bool()[:, None] & cond)
    other_rows = (~cond)[:, :, None] & other_cols[:, None, :]
    mask = cond_rows | other_rows
    # A row with nothing to attend to would give NaNs: let it see itself.
    eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)[None]
    return mask | (eye & ~mask.any(-1, keepdim=True))


def decode_ids(tok, ids) -> str:
    """Token ids -> text: cut after the first eos, strip special tokens."""
    ids = [int(i) for i in ids]
    e = eos_id(tok)
    if e in ids:
        ids = ids[: ids.index(e)]
    return tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()

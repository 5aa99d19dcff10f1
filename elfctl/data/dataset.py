"""Map-style training sets of tokenized examples, and reference texts for sampling and evaluation.

Training sets are memory-mapped from the on-disk token cache (:mod:`elfctl.data.tokenized`);
:class:`TokenDataset` builds the same examples in RAM from a list of records (small sets and tests).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from elfctl.data.text_sources import load_records
from elfctl.data.tokenize import SequenceBuilder, batch_token_ids


class TokenDataset(Dataset):
    """Tokenized examples (``input_ids``, ``attention_mask``, ``cond_mask``), built in memory once.

    ``records[i]`` (or ``raw(i)``) keeps the source text (``text`` or ``input``/``output``) of example i (not for
    packed sets, whose windows cross example boundaries). Blank records are skipped and counted in
    ``stats.skipped``; ``stats.truncated`` counts examples cut to fit ``max_length``.
    """

    def __init__(self, records: list[dict], tok, data_cfg):
        self.builder = SequenceBuilder(tok, data_cfg)
        n = len(records)
        records = [r for r in records if all(isinstance(v, str) and v.strip() for v in r.values())]
        self.builder.stats.skipped = n - len(records)
        if data_cfg.task == "conditional":
            cs = batch_token_ids(tok, [r["input"] for r in records])
            ys = batch_token_ids(tok, [r["output"] for r in records])
            self.items = [self.builder.pair(r["input"], r["output"], c, y) for r, c, y in zip(records, cs, ys)]
            self.records = records
        elif data_cfg.packing:
            self.items = self.builder.packed(r["text"] for r in records)
            self.records = []
        else:
            # Cut very long texts before tokenizing: 12 characters per token is far above English's ~4-5, so
            # every text cut here is still longer than max_length tokens and still counted as truncated.
            cap = data_cfg.max_length * 12
            ids = batch_token_ids(tok, [r["text"][:cap] for r in records])
            self.items = [self.builder.text(r["text"], i) for r, i in zip(records, ids)]
            self.records = records
        # one tensor per field: compact, and fast to index
        self.tensors = {k: torch.stack([it[k] for it in self.items]) for k in self.items[0]} if self.items else {}
        self.items = []

    @property
    def stats(self):
        return self.builder.stats

    def __len__(self) -> int:
        return len(self.tensors["input_ids"]) if self.tensors else 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def raw(self, i: int) -> dict:
        """The source strings of example i ('text', or 'input'/'output'); unavailable for packed sets."""
        if not self.records:
            raise IndexError("a packed dataset keeps no per-example source text")
        return self.records[i]


def build_dataset(cfg, split: str, tokenizer, data_dir: Optional[str] = None,
                  log: Callable[[str], None] = lambda s: None):
    """Tokenized examples of ``split``, memory-mapped from the on-disk cache (``elfctl.data.tokenized``); the
    training split comes from ``data.pretokenized`` when set. ``data.max_examples`` caps the training split."""
    if cfg.data.pretokenized and split == cfg.data.train_split:
        from elfctl.data.pretokenized import open_pretokenized

        return open_pretokenized(cfg, split, tokenizer, log=log)
    from elfctl.optional import require

    require("pyarrow", "the tokenized training-set cache")  # tokenized.py maps its Arrow files
    from elfctl.data.tokenized import build_tokenized

    return build_tokenized(cfg, split, tokenizer, data_dir=data_dir, log=log)


def build_in_memory(cfg, split: str, tokenizer, data_dir: Optional[str] = None) -> TokenDataset:
    """The same examples as :func:`build_dataset`, tokenized in RAM (small sets; the reference the tests use)."""
    limit = cfg.data.max_examples if split == cfg.data.train_split else None
    records = load_records(cfg.data, split, data_dir or cfg.data.data_dir, limit=limit)
    if cfg.data.max_examples and split == cfg.data.train_split:
        records = records[: cfg.data.max_examples]
    return TokenDataset(records, tokenizer, cfg.data)


def reference_texts(cfg, split: Optional[str] = None, n: Optional[int] = None) -> list[dict]:
    """Held-out examples as dicts ('text', or 'input'/'output'), the first n of the split."""
    records = load_records(cfg.data, split or cfg.data.eval_split, cfg.data.data_dir, limit=n)
    records = [r for r in records if all(isinstance(v, str) and v.strip() for v in r.values())]
    return records[:n] if n else records

"""A synthetic data source for training tests: no tokenizer, no registry, a tiny frozen encoder."""

from __future__ import annotations

import torch
import torch.nn as nn


class TinyEncoder(nn.Module):
    """Frozen random token embeddings + one mixing layer: ids (B, L) -> latents (B, L, C)."""

    def __init__(self, vocab_size: int = 23, latent_dim: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.vocab_size, self.trainable = latent_dim, vocab_size, False
        self.register_buffer("table", torch.randn(vocab_size, latent_dim, generator=g))

    def forward(self, input_ids, attention_mask=None):
        return self.table[input_ids]


class SyntheticData:
    """Map-style set of short repeated patterns, shaped like the real DataSource."""

    def __init__(self, cfg, run_dir, device, n: int = 48, vocab_size: int = 23):
        L = cfg.data.max_length
        g = torch.Generator().manual_seed(1)
        self.tokenizer = None
        self.encoder = TinyEncoder(vocab_size).to(device)
        self.trainable_encoder = False
        self.cache_path = None
        self.dataset = []
        for _ in range(n):
            start = int(torch.randint(0, vocab_size, (1,), generator=g))
            ids = (torch.arange(L) + start) % vocab_size
            self.dataset.append({"input_ids": ids, "attention_mask": torch.ones(L, dtype=torch.bool),
                                 "cond_mask": torch.zeros(L, dtype=torch.bool)})

    def batch(self, indices, device):
        keys = ("input_ids", "attention_mask", "cond_mask")
        return {k: torch.stack([self.dataset[i][k] for i in indices]).to(device) for k in keys}

    def latents(self, batch, drop):
        return self.encoder(batch["input_ids"])

"""Building blocks of the ELF denoiser: RMSNorm, 1-D RoPE, time embedding, attention, SwiGLU, block.

Shapes: B batch, N tokens (prefix + sequence), D hidden width, H heads, Dh = D / H.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """A linear layer with the paper's init: xavier-uniform weight, zero bias."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain; statistics in fp32 whatever the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv_rms = torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight.to(x.dtype) * (x * inv_rms.to(x.dtype))


class RotaryEmbedding1D(nn.Module):
    """1-D rotary position embedding on adjacent channel pairs; the first ``num_prefix`` tokens are not rotated.

    Position p of the sequence (after the prefix) rotates channel pair (2i, 2i+1) by p * theta^(-2i/Dh).
    """

    def __init__(self, head_dim: int, num_prefix: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.num_prefix = num_prefix
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def tables(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables of shape (num_prefix + seq_len, Dh), prefix rows = (1, 0)."""
        if self._cache is not None and self._cache[0] == seq_len and self._cache[1] == device:
            return self._cache[2], self._cache[3]
        pos = torch.arange(seq_len, dtype=torch.float32, device=device)
        angles = torch.outer(pos, self.inv_freq.to(device)).repeat_interleave(2, dim=-1)  # (L, Dh)
        prefix = torch.zeros(self.num_prefix, angles.shape[1], device=device)
        angles = torch.cat([prefix, angles], dim=0)
        cos, sin = angles.cos(), angles.sin()
        if not torch.compiler.is_compiling():
            self._cache = (seq_len, device, cos, sin)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: (B, H, N, Dh). Pairs (a, b) -> (a cos - b sin, b cos + a sin)."""
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class TimestepEmbedder(nn.Module):
    """Scalar (t or a guidance scale) -> sinusoidal features -> 2-layer SiLU MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.max_period = max_period
        self.fc1 = nn.Linear(freq_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def sinusoidal(self, s: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float32,
                                                                    device=s.device) / half)
        args = s.float()[:, None] * freqs[None]
        return torch.cat([args.cos(), args.sin()], dim=-1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(self.sinusoidal(s))))


class Attention(nn.Module):
    """Multi-head self-attention with qkv bias, RMSNorm on q and k, RoPE, and a key padding mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = xavier_linear(dim, 3 * dim)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.proj = xavier_linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, N, D); attn_mask: (B, 1, 1, N) bool, True = attend, or None."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        q = RotaryEmbedding1D.rotate(self.q_norm(q), cos, sin)
        k = RotaryEmbedding1D.rotate(self.k_norm(k), cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.proj(out.transpose(1, 2).reshape(B, N, D))
        return F.dropout(out, self.dropout, self.training)


class SwiGLU(nn.Module):
    """SwiGLU MLP; inner width int(mlp_ratio * dim * 2 / 3) keeps the parameter count of a 4x GELU MLP."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        inner = int(int(dim * mlp_ratio) * 2 / 3)
        self.w12 = xavier_linear(dim, 2 * inner)
        self.w3 = xavier_linear(inner, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.dropout(F.silu(gate) * value, self.dropout, self.training))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, dropout=dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, attn_mask)
        return x + self.mlp(self.norm2(x))


def run_blocks(blocks, x: torch.Tensor, *args, checkpoint: bool) -> torch.Tensor:
    """Apply ``blocks`` in order as ``block(x, *args)``; with ``checkpoint``, each block's activations are recomputed
    in backward instead of kept (gradient checkpointing)."""
    for block in blocks:
        x = torch.utils.checkpoint.checkpoint(block, x, *args, use_reentrant=False) if checkpoint else block(x, *args)
    return x

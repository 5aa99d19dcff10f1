"""MDLM's backbone: a diffusion transformer (DiT) over token ids, with adaLN modulation from a conditioning vector.

Shapes: B batch, L tokens, h hidden width, H heads, V vocabulary rows ([MASK] included).

* Input: an untied embedding table V x h (kaiming-uniform, a = sqrt 5); no absolute positions: RoPE (base 1e4,
  rotate-half) on q and k of every head. Attention is bidirectional with no key mask (pads are tokens too).
* Block: LayerNorm (weight only, fp32) -> x (1 + scale) + shift -> qkv (no bias) -> attention -> out-proj (no bias)
  -> dropout -> x gate -> residual; then the same around an MLP h -> 4h -> h (GELU-tanh, biases). The 6h
  shift/scale/gate come from a zero-initialised Linear(cond -> 6h) of c.
* c = SiLU(MLP(sinusoid_256(sigma))), MLP 256 -> cond -> cond. With ``time_conditioning`` off (MDLM's default)
  sigma is 0, so c is a learned constant: given z_t the optimal denoiser does not depend on t.
* Output: LayerNorm, adaLN shift/scale (zero-init), Linear h -> V with zero weight and bias, so the logits start
  uniform. ``rows`` computes it at some positions only: the loss and the sampler read the logits of masked
  positions alone (SUBS carries the others over), and the V-way head is most of a small model's compute.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.layers import run_blocks


class LayerNormNoBias(nn.Module):
    """LayerNorm with a learned gain and no bias, computed in fp32 whatever the autocast dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.float(), (x.shape[-1],), eps=self.eps) * self.weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class RotaryHalf(nn.Module):
    """RoPE in the rotate-half layout: channel i pairs with i + Dh/2, position p turns it by p * base^(-2i/Dh)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def tables(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), self.inv_freq.to(device))
        emb = torch.cat([freqs, freqs], dim=-1)  # (L, Dh)
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: (B, H, L, Dh)."""
        a, b = x.chunk(2, dim=-1)
        return x * cos.to(x.dtype) + torch.cat([-b, a], dim=-1) * sin.to(x.dtype)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, cond_dim: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.norm1 = LayerNormNoBias(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNormNoBias(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.adaln = nn.Linear(cond_dim, 6 * dim)
        nn.init.zeros_(self.adaln.weight)
        nn.init.zeros_(self.adaln.bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c)[:, None].chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        q, k = RotaryHalf.rotate(q, cos, sin), RotaryHalf.rotate(k, cos, sin)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, D)
        x = x + gate1 * F.dropout(self.out(h), self.dropout, self.training)
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2 * F.dropout(h, self.dropout, self.training)


class SigmaEmbedder(nn.Module):
    """sigma (B,) -> sinusoidal features (256) -> Linear -> SiLU -> Linear (the caller applies the last SiLU)."""

    def __init__(self, cond_dim: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float32,
                                                                    device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class DiT(nn.Module):
    """The MDLM denoiser: token ids (B, L) [and sigma (B,)] -> logits (B, L, V) in fp32."""

    latent_dim = None  # works on token ids: no encoder latents

    def __init__(self, vocab_size: int, *, depth: int, hidden_size: int, num_heads: int, cond_dim: int = 128,
                 dropout: float = 0.0, time_conditioning: bool = False, gradient_checkpointing: bool = False):
        super().__init__()
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.time_conditioning, self.gradient_checkpointing = time_conditioning, gradient_checkpointing
        self.embed = nn.Parameter(torch.empty(vocab_size, hidden_size))
        nn.init.kaiming_uniform_(self.embed, a=math.sqrt(5))
        self.sigma_embed = SigmaEmbedder(cond_dim)
        self.rope = RotaryHalf(hidden_size // num_heads)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, cond_dim, dropout=dropout) for _ in range(depth))
        self.norm_final = LayerNormNoBias(hidden_size)
        self.adaln_final = nn.Linear(cond_dim, 2 * hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        for layer in (self.adaln_final, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, ids: torch.Tensor, sigma: Optional[torch.Tensor] = None,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, L, V) in fp32; with ``rows`` (R,) indices into the B·L positions (row-major), (R, V) for
        those positions only."""
        B, L = ids.shape
        if sigma is None or not self.time_conditioning:
            sigma = torch.zeros(B, device=ids.device)
        with torch.autocast(ids.device.type, enabled=False):
            c = F.silu(self.sigma_embed(sigma))
        x = self.embed[ids]
        rope = self.rope.tables(L, ids.device)
        use_ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        x = run_blocks(self.blocks, x, rope, c, checkpoint=use_ckpt)
        shift, scale = self.adaln_final(c)[:, None].chunk(2, dim=-1)
        if rows is not None:
            x = x.flatten(0, 1).index_select(0, rows)
            shift, scale = shift[:, 0].index_select(0, rows // L), scale[:, 0].index_select(0, rows // L)
        return self.head(modulate(self.norm_final(x), shift, scale)).float()


def forward_flops(model: DiT, rows: int, length: int, head_tokens: Optional[float] = None) -> float:
    """Model FLOPs of one forward (2 per multiply-add; the convention of :mod:`elfctl.train.flops`): the block
    linears at every token, the V-way head at ``head_tokens`` of the rows·length tokens (default: all),
    attention 4·L²·h per block and row, the adaLN maps once per row."""
    macs = lambda m: m.in_features * m.out_features  # noqa: E731
    per_token = sum(macs(m) for b in model.blocks for m in (b.qkv, b.out, b.mlp[0], b.mlp[2]))
    per_row = sum(macs(b.adaln) for b in model.blocks) + macs(model.adaln_final) + \
        sum(macs(m) for m in model.sigma_embed.mlp if isinstance(m, nn.Linear))
    attention = sum(4 * length * length * b.qkv.in_features for b in model.blocks)
    head_tokens = rows * length if head_tokens is None else head_tokens
    return rows * (2 * (length * per_token + per_row) + attention) + 2 * head_tokens * macs(model.head)

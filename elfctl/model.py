"""The ELF denoiser: one transformer, two modes (denoise a latent / decode it to tokens).

Every subcommand builds its network here (``build_model``). Input is the noisy latent ``z`` (B, L, C)
concatenated with the self-conditioning latent (B, L, C), projected 2C -> C, then through a bottleneck
C -> 128 -> hidden. In front of the sequence go, in this order: the time tokens, the SC-CFG tokens and
the model-mode tokens (gated: on in decode mode). The flow head predicts the clean latent (or the
velocity, for the v-prediction ablation); the decode head maps hidden states to vocabulary logits.

Loading the authors' PyTorch checkpoints (github.com/lillian039/ELF, branch pytorch_elf) is a key
rename: see ``AUTHORS_KEY_MAP`` (their factored decode kernels are stored (in, out) and need a transpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.layers import Block, RMSNorm, RotaryEmbedding1D, TimestepEmbedder, run_blocks, xavier_linear


@dataclass(frozen=True)
class ModelShape:
    depth: int
    hidden_size: int
    num_heads: int


# Sizes of the paper (ELF-B/M/L) and two small ones for CPUs. Parameter counts with t5-small's latent width (512)
# and vocabulary, len(tokenizer) = 32,100 (its embedding table's 32,128 rows include 28 unused padding rows):
# 104.58M / 342.54M / 652.10M for B / M / L (the paper: 105M / 342M / 652M).
PRESETS: dict[str, ModelShape] = {
    "elf-tiny": ModelShape(depth=4, hidden_size=128, num_heads=4),
    "elf-small": ModelShape(depth=6, hidden_size=384, num_heads=6),
    "elf-b": ModelShape(depth=12, hidden_size=768, num_heads=12),
    "elf-m": ModelShape(depth=24, hidden_size=1056, num_heads=16),
    "elf-l": ModelShape(depth=32, hidden_size=1280, num_heads=16),
}

# Our parameter name -> the authors' (pytorch_elf branch), for reading and writing their released checkpoints
# (elfctl/authors/). Per-block names are the same on both sides, under the prefix "blocks.{i}.".
AUTHORS_KEY_MAP: dict[str, str] = {
    "sc_proj.weight": "self_cond_proj.weight",
    "sc_proj.bias": "self_cond_proj.bias",
    "in_proj1.weight": "text_proj.proj1.weight",
    "in_proj2.weight": "text_proj.proj2.weight",
    "in_proj2.bias": "text_proj.proj2.bias",
    "time_embed.fc1.weight": "t_embedder.mlp_0.weight",
    "time_embed.fc1.bias": "t_embedder.mlp_0.bias",
    "time_embed.fc2.weight": "t_embedder.mlp_2.weight",
    "time_embed.fc2.bias": "t_embedder.mlp_2.bias",
    "time_tokens": "t_emb_tokens",
    "sc_cfg_embed.fc1.weight": "self_cond_cfg_embedder.mlp_0.weight",
    "sc_cfg_embed.fc1.bias": "self_cond_cfg_embedder.mlp_0.bias",
    "sc_cfg_embed.fc2.weight": "self_cond_cfg_embedder.mlp_2.weight",
    "sc_cfg_embed.fc2.bias": "self_cond_cfg_embedder.mlp_2.bias",
    "sc_cfg_tokens": "self_cond_cfg_tokens",
    "mode_tokens": "mode_tokens",
    "flow_norm.weight": "final_layer.norm_final.weight",
    "flow_head.weight": "final_layer.linear.weight",
    "flow_head.bias": "final_layer.linear.bias",
    "decode_proj.weight": "proj_kernel",
    "decode_proj.bias": "proj_bias",
    "unembed.weight": "unembed_kernel",
    "unembed.bias": "unembed_bias",
    # blocks.{i}.norm1/attn.qkv/attn.q_norm/attn.k_norm/attn.proj/norm2/mlp.w12/mlp.w3: same names.
}
# Their factored decode kernels are bare (in, out) matrices; ours are nn.Linear weights (out, in).
AUTHORS_TRANSPOSED: frozenset[str] = frozenset({"decode_proj.weight", "unembed.weight"})
# Wrappers whose prefix a saved state dict may carry: torch.compile ("_orig_mod.") and DDP ("module.").
AUTHORS_WRAPPER_PREFIXES: tuple[str, ...] = ("_orig_mod.", "module.")


def resolve_shape(preset: str, depth: Optional[int] = None, hidden_size: Optional[int] = None,
                  num_heads: Optional[int] = None) -> ModelShape:
    base = PRESETS[preset]
    return ModelShape(depth=depth or base.depth, hidden_size=hidden_size or base.hidden_size,
                      num_heads=num_heads or base.num_heads)


DecodeGate = Union[None, bool, float, torch.Tensor]


class ELF(nn.Module):
    """The ELF network.

    Args:
        latent_dim: C, the width of the encoder latents.
        vocab_size: size of the decode head's vocabulary.
        depth, hidden_size, num_heads: transformer shape.
        bottleneck_dim: width of the input bottleneck (C -> bottleneck -> hidden, first without bias).
        num_time_tokens, num_sc_cfg_tokens, num_mode_tokens: prefix token counts.
        dropout: dropout rate inside the middle half of the blocks.
        gradient_checkpointing: recompute block activations during backward.
    """

    def __init__(self, latent_dim: int, vocab_size: int, *, depth: int, hidden_size: int, num_heads: int,
                 bottleneck_dim: int = 128, num_time_tokens: int = 4, num_sc_cfg_tokens: int = 4,
                 num_mode_tokens: int = 4, dropout: float = 0.0, gradient_checkpointing: bool = False):
        super().__init__()
        self.latent_dim = latent_dim
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.gradient_checkpointing = gradient_checkpointing
        self.num_prefix = num_time_tokens + num_sc_cfg_tokens + num_mode_tokens

        self.sc_proj = xavier_linear(2 * latent_dim, latent_dim)
        self.in_proj1 = xavier_linear(latent_dim, bottleneck_dim, bias=False)
        self.in_proj2 = xavier_linear(bottleneck_dim, hidden_size)

        self.time_embed = TimestepEmbedder(hidden_size)
        self.time_tokens = nn.Parameter(torch.randn(1, num_time_tokens, hidden_size) * 0.02)
        if num_sc_cfg_tokens > 0:
            self.sc_cfg_embed = TimestepEmbedder(hidden_size)
            self.sc_cfg_tokens = nn.Parameter(torch.randn(1, num_sc_cfg_tokens, hidden_size) * 0.02)
        else:
            self.sc_cfg_embed = None
            self.register_parameter("sc_cfg_tokens", None)
        self.mode_tokens = nn.Parameter(torch.randn(1, num_mode_tokens, hidden_size) * 0.02)

        self.rope = RotaryEmbedding1D(hidden_size // num_heads, num_prefix=self.num_prefix)
        lo, hi = depth // 4, depth // 4 * 3
        self.blocks = nn.ModuleList(
            Block(hidden_size, num_heads, dropout=dropout if lo <= i < hi else 0.0) for i in range(depth))

        self.flow_norm = RMSNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, latent_dim)
        nn.init.zeros_(self.flow_head.weight)
        nn.init.zeros_(self.flow_head.bias)
        self.decode_proj = xavier_linear(hidden_size, latent_dim)
        self.unembed = xavier_linear(latent_dim, vocab_size)

    # ------------------------------------------------------------------ helpers
    def _prefix(self, t: torch.Tensor, sc_cfg: Optional[torch.Tensor], decode: DecodeGate) -> torch.Tensor:
        B = t.shape[0]
        parts = [self.time_tokens.expand(B, -1, -1) + self.time_embed(t)[:, None]]
        if self.sc_cfg_embed is not None:
            w = sc_cfg if sc_cfg is not None else torch.ones_like(t)
            parts.append(self.sc_cfg_tokens.expand(B, -1, -1) + self.sc_cfg_embed(w)[:, None])
        gate = self._gate(decode, B, t.device)
        parts.append(self.mode_tokens.expand(B, -1, -1) * gate)
        return torch.cat(parts, dim=1)

    def _gate(self, decode: DecodeGate, B: int, device: torch.device) -> torch.Tensor:
        """Mode gate (B, 1, 1): 1 in decode mode, 0 when denoising; may differ per example."""
        if decode is None or decode is False:
            return torch.zeros(B, 1, 1, device=device)
        if isinstance(decode, torch.Tensor) and decode.dim() > 0:
            return decode.to(device=device, dtype=torch.float32).view(B, 1, 1)
        return torch.full((B, 1, 1), float(decode), device=device)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor, t: torch.Tensor, *, x_sc: Optional[torch.Tensor] = None,
                sc_cfg: Optional[torch.Tensor] = None, decode: DecodeGate = None,
                key_mask: Optional[torch.Tensor] = None, return_logits: Optional[bool] = None,
                logit_rows: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run the network.

        Args:
            z: (B, L, C) noisy latent (or, in decode mode, the near-clean latent).
            t: (B,) time in [0, 1].
            x_sc: (B, L, C) self-conditioning latent (previous clean prediction); None = zeros.
            sc_cfg: (B,) SC-CFG scale fed to its tokens; None = 1.
            decode: mode gate: None/False (denoise), True/1.0 (decode), or a (B,) 0/1 tensor.
            key_mask: (B, L) bool, True = a valid token others may attend to; None = all valid.
            return_logits: compute the decode head; default: whenever ``decode`` is not None/False.
            logit_rows: (R,) row indices: compute the decode head for these rows only (training uses it for
                the decode-branch rows: the vocabulary projection is the largest single matmul of a small model).

        Returns:
            (flow_out (B, L, C) in fp32, logits (B or R, L, V) in fp32 or None).
        """
        B, L, C = z.shape
        if x_sc is None:
            x_sc = torch.zeros_like(z)
        # Input projections and prefix embeddings run in fp32 (outside any autocast region).
        with torch.autocast(z.device.type, enabled=False):
            h = self.in_proj2(self.in_proj1(self.sc_proj(torch.cat([z, x_sc], dim=-1).float())))
            prefix = self._prefix(t, sc_cfg, decode)
        h = torch.cat([prefix, h], dim=1)
        rope = self.rope.tables(L, z.device)
        attn_mask = None
        if key_mask is not None:
            full = torch.cat([torch.ones(B, self.num_prefix, dtype=torch.bool, device=z.device),
                              key_mask.to(device=z.device, dtype=torch.bool)], dim=1)
            attn_mask = full[:, None, None, :]

        use_ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        h = run_blocks(self.blocks, h, rope, attn_mask, checkpoint=use_ckpt)
        h = h[:, self.num_prefix:]

        if return_logits is None:
            return_logits = not (decode is None or decode is False)
        with torch.autocast(z.device.type, enabled=False):
            hf = h.float()
            flow_out = self.flow_head(self.flow_norm(hf))
            logits = None
            if return_logits:
                hd = hf if logit_rows is None else hf.index_select(0, logit_rows)
                logits = self.unembed(F.gelu(self.decode_proj(hd), approximate="tanh"))
        return flow_out, logits


def build_model(model_cfg, latent_dim: int, vocab_size: int) -> ELF:
    """Build the network described by a ``ModelConfig`` section for a given encoder."""
    shape = resolve_shape(model_cfg.preset, model_cfg.depth, model_cfg.hidden_size, model_cfg.num_heads)
    return ELF(latent_dim, vocab_size, depth=shape.depth, hidden_size=shape.hidden_size,
               num_heads=shape.num_heads, bottleneck_dim=model_cfg.bottleneck_dim,
               num_time_tokens=model_cfg.num_time_tokens, num_sc_cfg_tokens=model_cfg.num_sc_cfg_tokens,
               num_mode_tokens=model_cfg.num_mode_tokens, dropout=model_cfg.dropout,
               gradient_checkpointing=model_cfg.gradient_checkpointing)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

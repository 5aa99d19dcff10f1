"""Text encoders that map token ids to the latents ELF learns in (ELF-METHOD §1 and its encoder ablation).

Modes: ``pretrained`` (frozen weights of ``encoder.source``), ``random`` (the same architecture, frozen, random
init from a fixed seed) and ``learned`` (a token-embedding table trained jointly with the denoiser). All return
latents normalised as ``(x − latent_mean) / latent_std``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from elfctl.data.assets import resolve_asset
from elfctl.errors import ConfigError

RANDOM_INIT_SEED = 1234
DEFAULT_LEARNED_DIM = 512
# Rows per encoder forward are capped so that the (rows, 1, L, L) additive mask and a T5's (rows, heads, L, L)
# position bias, both fp32, stay under this many bytes (64 rows at length 1024 would take 2.4 GB).
ENCODE_CHUNK_BYTES = 512 * 2**20
ENCODE_PRECISIONS = ("fp32", "bf16-autocast")


def encode_precision(frozen: bool, device: torch.device | str, bf16: bool) -> str:
    """The one encoding precision of a run, for every latent it encodes (on the fly, into a cache, prompts):
    bf16 autocast for a frozen encoder on CUDA with ``train.bf16`` (as the authors encode), fp32 otherwise."""
    return "bf16-autocast" if frozen and bf16 and torch.device(device).type == "cuda" else "fp32"


def rows_per_chunk(length: int, heads: int) -> int:
    """Rows per encoder forward at sequence length ``length`` (see ``ENCODE_CHUNK_BYTES``)."""
    return max(1, ENCODE_CHUNK_BYTES // (length * length * (heads + 1) * 4))


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) or (B, L, L) bool -> (B, 1, L, L) additive float mask (0 keep, -inf-ish drop).

    A float mask reaches every attention implementation of transformers (a bool 4-D mask is misread by the
    eager one), so this is the one form we pass.
    """
    if mask.dim() == 2:
        mask = mask[:, None, :].expand(-1, mask.shape[1], -1)
    return torch.where(mask.bool()[:, None], 0.0, torch.finfo(dtype).min).to(dtype)


class TextEncoder(nn.Module):
    def __init__(self, body: Optional[nn.Module], embedding: Optional[nn.Embedding], latent_dim: int, vocab_size: int,
                 latent_mean: float, latent_std: float, trainable: bool, description: str):
        super().__init__()
        self.body = body
        self.embedding = embedding
        self.latent_dim = latent_dim
        self.vocab_size = vocab_size
        self.latent_mean = latent_mean
        self.latent_std = latent_std
        self.trainable = trainable
        self.description = description
        self.precision = "fp32"  # set_precision(): one of ENCODE_PRECISIONS
        if body is not None:
            body.requires_grad_(False)
            body.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.body is not None:
            self.body.eval()  # a frozen encoder never uses dropout
        return self

    def set_precision(self, precision: str) -> "TextEncoder":
        """Encode in ``precision`` from now on (``encode_precision`` decides it per run)."""
        if precision not in ENCODE_PRECISIONS:
            raise ValueError(f"encoder precision {precision!r}; valid: {', '.join(ENCODE_PRECISIONS)}")
        self.precision = precision
        return self

    def raw(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Un-normalised latents (B, L, C) in fp32, encoded in chunks of rows (``rows_per_chunk``) in the
        encoder's precision (bf16 autocast applies on CUDA only)."""
        if self.embedding is not None:
            return self.embedding(input_ids).float()
        dtype = next(self.body.parameters()).dtype
        cfg = self.body.config
        heads = getattr(cfg, "num_heads", None) or getattr(cfg, "num_attention_heads", None) or 1
        n = rows_per_chunk(input_ids.shape[1], heads)
        bf16 = self.precision == "bf16-autocast" and input_ids.device.type == "cuda"
        outs = []
        with torch.no_grad(), torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
            for a in range(0, input_ids.shape[0], n):
                out = self.body(input_ids=input_ids[a:a + n],
                                attention_mask=_additive_mask(attention_mask[a:a + n], dtype))
                outs.append(out.last_hidden_state.float())
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L); attention_mask (B, L) or (B, L, L) bool -> normalised latents (B, L, C) fp32."""
        return (self.raw(input_ids, attention_mask) - self.latent_mean) / self.latent_std


def _load_body(path, mode: str, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoConfig, AutoModel, T5EncoderModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ConfigError(f"encoder.source: no model config in {path}: {e}") from None
    is_t5 = config.model_type in ("t5", "mt5", "umt5")
    cls = T5EncoderModel if is_t5 else AutoModel
    if mode == "pretrained":
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise ConfigError(f"encoder.source: {path} has a config but no weights; use encoder.mode=random for a "
                              f"random encoder of that shape")
        body = cls.from_pretrained(str(path), dtype=dtype)
    else:
        with torch.random.fork_rng(devices=[]):  # a fixed init that leaves the caller's RNG untouched
            torch.manual_seed(RANDOM_INIT_SEED)
            body = (cls(config) if cls is T5EncoderModel else AutoModel.from_config(config)).to(dtype)
    if hasattr(body, "pooler"):
        body.pooler = None  # unused: saves compute and keeps every parameter meaningful
    return body


def build_encoder(encoder_cfg, tokenizer, data_dir: Optional[str] = None) -> TextEncoder:
    dtype = getattr(torch, encoder_cfg.dtype)
    vocab = len(tokenizer)
    if encoder_cfg.mode == "learned":
        dim = DEFAULT_LEARNED_DIM
        try:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(str(resolve_asset(encoder_cfg.source, data_dir=data_dir)))
            dim = getattr(cfg, "d_model", None) or getattr(cfg, "hidden_size", None) or dim
        except Exception:  # noqa: BLE001 - the width is all we want from it; fall back to 512
            pass
        emb = nn.Embedding(vocab, dim)
        nn.init.normal_(emb.weight, std=encoder_cfg.latent_std)  # latents start at unit scale after normalising
        return TextEncoder(None, emb, dim, vocab, encoder_cfg.latent_mean, encoder_cfg.latent_std, True,
                           f"learned embeddings {vocab}x{dim}")
    source = encoder_cfg.architecture if (encoder_cfg.mode == "random" and encoder_cfg.architecture) else encoder_cfg.source
    path = resolve_asset(source, data_dir=data_dir)
    body = _load_body(path, encoder_cfg.mode, dtype)
    dim = getattr(body.config, "d_model", None) or body.config.hidden_size
    if getattr(body.config, "vocab_size", vocab) < vocab:
        raise ConfigError(f"encoder.tokenizer: its vocabulary ({vocab}) is larger than the encoder's "
                          f"({body.config.vocab_size})")
    return TextEncoder(body, None, dim, vocab, encoder_cfg.latent_mean, encoder_cfg.latent_std, False,
                       f"{encoder_cfg.mode} {source}")


@torch.no_grad()
def measure_latent_stats(encoder: TextEncoder, batches) -> tuple[float, float, int]:
    """Mean and std of raw (un-normalised) latents over valid positions: (mean, std, positions)."""
    total, sq, n = 0.0, 0.0, 0
    for b in batches:
        x = encoder.raw(b["input_ids"], b["attention_mask"].bool())
        valid = b["attention_mask"].bool()
        v = x[valid].double()
        total += v.sum().item()
        sq += v.pow(2).sum().item()
        n += v.numel()
    mean = total / max(n, 1)
    return mean, max(sq / max(n, 1) - mean * mean, 0.0) ** 0.5, n // max(encoder.latent_dim, 1)

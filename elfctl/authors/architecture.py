"""The network's shape, read off the tensors of an authors' state dict (nothing in their file names it).

depth = the number of ``blocks.*``; hidden = a block's norm width; heads = hidden / the ``q_norm`` width (the
head dimension); latent width C from the flow head; vocabulary from the unembedding kernel (C, V); bottleneck
from the first input projection; prefix-token counts from the token tensors. The inferred shape is then checked
against every tensor of the file: the first missing, mis-shaped or unexpected key is named in one line.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from elfctl.authors.keys import authors_name
from elfctl.errors import ConfigError
from elfctl.model import AUTHORS_TRANSPOSED, ELF, PRESETS

_BLOCK = re.compile(r"blocks\.(\d+)\.")


@dataclass(frozen=True)
class Architecture:
    depth: int
    hidden_size: int
    num_heads: int
    latent_dim: int
    vocab_size: int
    bottleneck_dim: int
    num_time_tokens: int
    num_sc_cfg_tokens: int
    num_mode_tokens: int

    @property
    def preset(self) -> Optional[str]:
        """The preset of exactly this depth, width and head count, if any."""
        for name, shape in PRESETS.items():
            if (shape.depth, shape.hidden_size, shape.num_heads) == (self.depth, self.hidden_size, self.num_heads):
                return name
        return None

    def summary(self) -> str:
        name = self.preset or "custom"
        return (f"{name}: depth {self.depth}, hidden {self.hidden_size}, {self.num_heads} heads, latent width "
                f"{self.latent_dim}, vocabulary {self.vocab_size}")

    def to_dict(self) -> dict:
        return {**asdict(self), "preset": self.preset}

    def build(self, device: str | torch.device = "cpu") -> ELF:
        """Our network of this shape (``device="meta"``: shapes only, no memory)."""
        with torch.device(device):
            return ELF(self.latent_dim, self.vocab_size, depth=self.depth, hidden_size=self.hidden_size,
                       num_heads=self.num_heads, bottleneck_dim=self.bottleneck_dim,
                       num_time_tokens=self.num_time_tokens, num_sc_cfg_tokens=self.num_sc_cfg_tokens,
                       num_mode_tokens=self.num_mode_tokens)


def _fail(what: str, detail: str) -> ConfigError:
    return ConfigError(f"{what}: not an ELF checkpoint in the authors' layout: {detail}")


def _need(state: dict, key: str, ndim: int, what: str) -> torch.Tensor:
    if key not in state:
        raise _fail(what, f"missing key '{key}'")
    t = state[key]
    if not isinstance(t, torch.Tensor) or t.dim() != ndim:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise _fail(what, f"'{key}' has shape {shape}, expected a {ndim}-D tensor")
    return t


def infer_architecture(state: dict[str, torch.Tensor], *, what: str = "checkpoint") -> Architecture:
    """The shape of the network whose (prefix-stripped) authors' state dict is ``state``; validates every key."""
    blocks = sorted({int(m.group(1)) for k in state for m in [_BLOCK.match(k)] if m})
    depth = len(blocks)
    if depth == 0:
        raise _fail(what, "missing key 'blocks.0.norm1.weight'")
    if blocks != list(range(depth)):
        gap = next(i for i in range(depth) if i not in blocks)
        raise _fail(what, f"missing key 'blocks.{gap}.norm1.weight' (blocks are not numbered 0..{blocks[-1]})")
    hidden = _need(state, "blocks.0.norm1.weight", 1, what).shape[0]
    head_dim = _need(state, "blocks.0.attn.q_norm.weight", 1, what).shape[0]
    if head_dim == 0 or hidden % head_dim:
        raise _fail(what, f"'blocks.0.attn.q_norm.weight' has width {head_dim}, which does not divide the hidden "
                          f"width {hidden} into heads")
    latent = _need(state, "final_layer.linear.weight", 2, what).shape[0]
    vocab = _need(state, "unembed_kernel", 2, what).shape[1]
    bottleneck = _need(state, "text_proj.proj1.weight", 2, what).shape[0]
    time_tokens = _need(state, "t_emb_tokens", 3, what).shape[1]
    sc_tokens = _need(state, "self_cond_cfg_tokens", 3, what).shape[1] if "self_cond_cfg_tokens" in state else 0
    mode_tokens = _need(state, "mode_tokens", 3, what).shape[1]
    if mode_tokens < 1 or time_tokens < 1:
        raise _fail(what, f"'{'mode_tokens' if mode_tokens < 1 else 't_emb_tokens'}' holds no tokens; ELF needs at "
                          f"least one time and one mode token")
    arch = Architecture(depth, hidden, hidden // head_dim, latent, vocab, bottleneck, time_tokens, sc_tokens,
                        mode_tokens)
    check_tensors(state, arch, what=what)
    return arch


def expected_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """The authors' name -> shape of every tensor of a network of shape ``arch`` (their layout)."""
    ours = arch.build("meta").state_dict()
    return {authors_name(k): tuple(reversed(v.shape)) if k in AUTHORS_TRANSPOSED else tuple(v.shape)
            for k, v in ours.items()}


def check_tensors(state: dict[str, torch.Tensor], arch: Architecture, *, what: str = "checkpoint") -> None:
    """Raise one ConfigError naming the first missing, mis-shaped or unexpected key of ``state``."""
    expected = expected_shapes(arch)
    for key, shape in expected.items():
        if key not in state:
            raise _fail(what, f"missing key '{key}' (expected shape {shape} for {arch.summary()})")
        t = state[key]
        if not isinstance(t, torch.Tensor):
            raise _fail(what, f"'{key}' is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            raise _fail(what, f"'{key}' has shape {tuple(t.shape)}, expected {shape} for {arch.summary()}")
        if not t.is_floating_point():
            raise _fail(what, f"'{key}' has dtype {t.dtype}, expected a floating-point tensor")
    extra = [k for k in state if k not in expected]
    if extra:
        raise _fail(what, f"unexpected key '{extra[0]}' ({len(extra)} not part of an ELF network of "
                          f"{arch.summary()})")

"""Parameter names: the authors' state dicts <-> elfctl's (``AUTHORS_KEY_MAP`` in elfctl/model.py).

Two kernels differ in layout as well as name: their decode kernels are bare (in, out) matrices, ours
``nn.Linear`` weights (out, in) (``AUTHORS_TRANSPOSED``). Every other tensor is copied as it is.
"""

from __future__ import annotations

import torch

from elfctl.model import AUTHORS_KEY_MAP, AUTHORS_TRANSPOSED, AUTHORS_WRAPPER_PREFIXES


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes, however they are nested."""
    out = {}
    for name, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in AUTHORS_WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        out[name] = value
    return out


def authors_name(ours: str) -> str:
    """The authors' name of one of our parameters (block parameters keep their names)."""
    return AUTHORS_KEY_MAP.get(ours, ours)


def from_authors(state: dict[str, torch.Tensor], our_keys: list[str]) -> dict[str, torch.Tensor]:
    """Our state dict (``our_keys``, in that order) out of a validated authors' state dict."""
    out = {}
    for key in our_keys:
        value = state[authors_name(key)]
        out[key] = value.t().contiguous() if key in AUTHORS_TRANSPOSED else value.contiguous()
    return out


def to_authors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state dict of one of ours (their decode kernels back to (in, out))."""
    return {authors_name(k): (v.t().contiguous() if k in AUTHORS_TRANSPOSED else v.contiguous())
            for k, v in state.items()}

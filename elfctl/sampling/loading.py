"""Loading a trained checkpoint for sampling: network (EMA or raw weights), recipe, tokenizer, encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from elfctl.config import Config, load_resolved
from elfctl.errors import ConfigError
from elfctl.model import ELF, build_model
from elfctl.train import checkpoint as ckpt


@dataclass
class Loaded:
    model: ELF
    cfg: Config
    meta: dict
    checkpoint: Path
    ema: Optional[bool] = None  # which weights were loaded (None: a bare weights file)
    tokenizer: Any = None
    encoder: Any = None


def load_for_sampling(ref: Optional[str | Path], *, runs_root: Path = Path("runs"), ema: Optional[bool] = True,
                      device: torch.device = torch.device("cpu"), trust_pickle: bool = False,
                      with_text: bool = True) -> Loaded:
    """Resolve ``ref`` (checkpoint dir, run dir, or None for the newest run) and build everything sampling needs.

    ``ema``: True the EMA weights, False the raw ones, None the recipe's ``sample.ema``. Weights of another
    architecture than the checkpoint's recipe describes are refused with one ConfigError listing the keys.
    """
    path = ckpt.resolve_checkpoint(ref, runs_root=runs_root, trust_pickle=trust_pickle)
    if path.is_file():  # a trusted pickle: a bare state dict of an ELF network beside a run's config.yaml
        cfg_path = path.parent / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"{path}: a weights file needs the run's config.yaml beside it")
        state = torch.load(path, map_location="cpu", weights_only=False)
        cfg, meta = load_resolved(cfg_path), {"step": None}
        if isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in ("ema", "model")):
            which = "model" if ema is False or not isinstance(state.get("ema"), dict) else "ema"
            state, ema = state[which], which == "ema"
        else:
            ema = None
        if not isinstance(state, dict) or "flow_head.weight" not in state or "unembed.weight" not in state:
            raise ConfigError(f"{path}: not the state dict of an ELF network (no flow_head.weight / unembed.weight)")
        latent_dim = state["flow_head.weight"].shape[0]
        vocab = state["unembed.weight"].shape[0]
    else:
        cfg = load_resolved(path / "config.yaml")
        meta = ckpt.read_meta(path)
        ema = cfg.sample.ema if ema is None else ema
        if not (path / f"{'ema' if ema else 'model'}.safetensors").is_file():
            raise ConfigError(f"{path} has no {'ema' if ema else 'model'}.safetensors"
                              f"{'; pass --no-ema for the raw weights' if ema else ''}")
        state = ckpt.load_tensors(path, "ema" if ema else "model")
        latent_dim, vocab = meta["latent_dim"], meta["vocab_size"]
    model = build_model(cfg.model, latent_dim, vocab)
    ckpt.load_state_dict_strict(model, state, what=f"checkpoint {path}")
    model.to(device).eval()
    loaded = Loaded(model, cfg, meta, path, ema)
    if with_text:
        from elfctl.data.encoders import build_encoder
        from elfctl.data.tokenize import load_tokenizer

        loaded.tokenizer = load_tokenizer(cfg.encoder, cfg.data.data_dir)
        loaded.encoder = build_encoder(cfg.encoder, loaded.tokenizer, cfg.data.data_dir)
        if loaded.encoder.trainable and path.is_dir() and (path / "encoder.safetensors").is_file():
            loaded.encoder.load_state_dict(ckpt.load_tensors(path, "encoder"))
        loaded.encoder.to(device).eval()
    return loaded

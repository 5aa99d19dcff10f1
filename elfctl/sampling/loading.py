"""Loading a trained checkpoint for sampling: network (EMA or raw weights), recipe, tokenizer, encoder.

``ref`` may also name one of the authors' released checkpoints (a hub id such as
``embedded-language-flows/ELF-B-owt-torch``, a ``checkpoint_<step>`` file or a folder of them): it is imported
once into ``<cache>/imports/`` (elfctl/authors/importer.py) and loaded from there. Naming a weights file of a
checkpoint picks those weights: ``model.safetensors`` the raw ones, ``ema.safetensors`` the EMA.
The text encoder is built only when a prompt or infill needs it, so an unconditional model samples without it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from elfctl.config import Config, load_resolved
from elfctl.errors import ConfigError
from elfctl.family import load_family
from elfctl.rundir import checkpoint as ckpt
from elfctl.rundir.names import CONFIG_NAME


WEIGHT_FILES = {"ema.safetensors": True, "model.safetensors": False}  # file -> is it the EMA


@dataclass
class Loaded:
    model: torch.nn.Module              # the network of the recipe's model.family
    cfg: Config
    meta: dict
    checkpoint: Path
    ema: Optional[bool] = None  # which weights were loaded (None: a bare weights file)
    tokenizer: Any = None
    _encoder: Any = field(default=None, repr=False)
    _build_encoder: Optional[Callable[[], Any]] = field(default=None, repr=False)

    @property
    def encoder(self) -> Any:
        """The text encoder, built on first use (prompts, infilling)."""
        if self._encoder is None and self._build_encoder is not None:
            self._encoder = self._build_encoder()
            self._build_encoder = None
        return self._encoder

    @encoder.setter
    def encoder(self, value: Any) -> None:
        self._encoder = value


def _is_authors_source(ref: str | Path) -> bool:
    """A hub id, a ``checkpoint_<step>`` file or a folder of them (not an elfctl run or checkpoint)."""
    from elfctl.authors.reading import FILE_PREFIX, file_step
    from elfctl.authors.source import looks_like_hub_id

    path = Path(ref).expanduser()
    if not path.exists():
        return looks_like_hub_id(str(ref))
    if path.is_file():
        return (path.name.startswith(FILE_PREFIX) and file_step(path) is not None
                and path.suffix not in ckpt.PICKLE_SUFFIXES and not (path.parent / "meta.json").is_file())
    if (path / "meta.json").is_file() or (path / ckpt.CKPT_DIR).is_dir():
        return False
    return any(p.name.startswith(FILE_PREFIX) and file_step(p) is not None for p in path.iterdir() if p.is_file())


def _named_weights(ref: Path, ema: Optional[bool]) -> tuple[Path, Optional[bool]]:
    """A file inside an elfctl checkpoint: its directory, and which weights the file names (or one line)."""
    if ref.name not in WEIGHT_FILES:
        raise ConfigError(f"--checkpoint {ref}: not a weights file; name the checkpoint directory {ref.parent}, its "
                          f"ema.safetensors (EMA weights) or its model.safetensors (raw weights)")
    named = WEIGHT_FILES[ref.name]
    if ema is False and named:
        raise ConfigError(f"--no-ema asks for the raw weights but --checkpoint names {ref.name} (the EMA); name "
                          f"{ref.parent / 'model.safetensors'} or drop --no-ema")
    return ref.parent, named


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_for_sampling(ref: Optional[str | Path], *, runs_root: Path = Path("runs"), ema: Optional[bool] = True,
                      device: torch.device = torch.device("cpu"), trust_pickle: bool = False,
                      with_text: bool = True, log: Callable[[str], None] = _stderr) -> Loaded:
    """Resolve ``ref`` (checkpoint dir, run dir, a weights file in a checkpoint, an authors' checkpoint, or None
    for the newest run) and build everything sampling needs.

    ``ema``: True the EMA weights, False the raw ones, None the recipe's ``sample.ema``; a named weights file
    overrides it. Weights of another architecture than the checkpoint's recipe describes are refused with one
    ConfigError listing the keys.
    """
    if ref is not None and _is_authors_source(ref):
        from elfctl.authors.importer import import_cached

        ref = import_cached(str(ref), note=log)
    elif ref is not None and Path(ref).is_file() and (Path(ref).parent / "meta.json").is_file():
        ref, ema = _named_weights(Path(ref), ema)
    path = ckpt.resolve_checkpoint(ref, runs_root=runs_root, trust_pickle=trust_pickle)
    if path.is_file():  # a trusted pickle: a bare state dict of an ELF network beside a run's config.yaml
        cfg_path = path.parent / CONFIG_NAME
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
        cfg = load_resolved(path / CONFIG_NAME)
        meta = ckpt.read_meta(path)
        ema = cfg.sample.ema if ema is None else ema
        if not (path / f"{'ema' if ema else 'model'}.safetensors").is_file():
            raise ConfigError(f"{path} has no {'ema' if ema else 'model'}.safetensors"
                              f"{'; pass --no-ema for the raw weights' if ema else ''}")
        state = ckpt.load_tensors(path, "ema" if ema else "model")
        latent_dim, vocab = meta["latent_dim"], meta["vocab_size"]
    model = load_family(cfg.model.family).build_network(cfg, latent_dim=latent_dim, vocab_size=vocab)
    ckpt.load_state_dict_strict(model, state, what=f"checkpoint {path}")
    model.to(device).eval()
    loaded = Loaded(model, cfg, meta, path, ema)
    if with_text:
        from elfctl.data.tokenize import load_tokenizer

        loaded.tokenizer = load_tokenizer(cfg.encoder, cfg.data.data_dir)
        loaded._build_encoder = lambda: _encoder_for(cfg, loaded.tokenizer, path, device)
    return loaded


def _encoder_for(cfg: Config, tokenizer, path: Path, device: torch.device):
    from elfctl.data.encoders import build_encoder

    try:
        encoder = build_encoder(cfg.encoder, tokenizer, cfg.data.data_dir)
    except ConfigError:
        from elfctl.authors.importer import read_provenance

        provenance = read_provenance(path.parent.parent) if path.is_dir() else None
        if provenance is None:
            raise
        raise ConfigError(f"this imported model encodes its inputs with the {cfg.encoder.source} encoder, whose "
                          f"weights are not available here; download them where the hub is reachable and point the "
                          f"run at them: elfctl import {provenance.get('source')} --out {path.parent.parent} "
                          f"encoder.source=/path/to/{cfg.encoder.source}") from None
    if encoder.trainable and path.is_dir() and (path / "encoder.safetensors").is_file():
        encoder.load_state_dict(ckpt.load_tensors(path, "encoder"))
    from elfctl.data.encoders import encode_precision

    # prompts are encoded as the run encoded its training latents (its train.bf16 on this device)
    encoder.set_precision(encode_precision(not encoder.trainable, device, cfg.train.bf16))
    return encoder.to(device).eval()

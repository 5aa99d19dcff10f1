"""``elfctl export RUN --format authors``: a ``checkpoint_<step>`` file the authors' loader accepts.

Their loader (``load_checkpoint`` on branch pytorch_elf) requires ``params``, ``opt_state``, ``step`` and
``epoch``, loads ``params`` strictly, takes ``ema_params1`` as the EMA and hands ``opt_state`` to their Muon
optimizer. We write their parameter names with the decode kernels back in (in, out) layout, and an optimizer
state with no moments whose two parameter groups (Muon for 2-D tensors, Nesterov-Adam for the rest, in their
order) match what their code builds, so it loads and starts from fresh moments. One more top-level entry,
``elfctl``, carries the run's config (encoder, tokenizer, recipe, sampling settings) for ``elfctl import``;
their loader ignores keys it does not name (elfctl/authors/carried.py).

An export is for sampling and evaluation in their code. It carries no optimizer moments, no scheduler state
(``lr_scheduler: None``) and ``epoch`` only when the run was imported at that step, so their trainer resuming from
it would restart its warm-up and count the epoch's batches from the wrong place; continue training in elfctl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from elfctl.atomic import atomic_open
from elfctl.authors.carried import CARRIED_KEY, carried_entry
from elfctl.authors.keys import to_authors
from elfctl.errors import ConfigError
from elfctl.rundir.names import CONFIG_NAME


def _opt_state(params: dict[str, torch.Tensor], lr: float) -> dict:
    """An empty optimizer state with the parameter groups of their ``muon_with_aux_adam``."""
    muon = [i for i, t in enumerate(params.values()) if t.dim() == 2]
    adam = [i for i, t in enumerate(params.values()) if t.dim() != 2]
    order = {old: new for new, old in enumerate(muon + adam)}
    return {"state": {}, "param_groups": [
        {"lr": lr, "momentum": 0.95, "weight_decay": 0.0, "use_muon": True, "params": [order[i] for i in muon]},
        {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "use_muon": False,
         "params": [order[i] for i in adam]}]}


def export_authors(ref: Path, out: Optional[Path] = None, *, runs_root: Path = Path("runs"),
                   note: Callable[[str], None] = print) -> Path:
    """Write RUN's latest (or the named) checkpoint as the authors' ``checkpoint_<step>``; returns its path."""
    from elfctl.authors.architecture import infer_architecture
    from elfctl.authors.importer import read_provenance
    from elfctl.config import load_resolved
    from elfctl.rundir import checkpoint as ckpt

    path = ckpt.resolve_checkpoint(ref, runs_root=runs_root)
    if path.is_file():
        raise ConfigError(f"{ref}: export needs an elfctl run or checkpoint directory")
    cfg = load_resolved(path / CONFIG_NAME)
    if cfg.model.prediction != "x":
        raise ConfigError(f"{path}: model.prediction is '{cfg.model.prediction}'; the authors' code only has "
                          f"x-prediction, so their sampler would misread this network")
    if cfg.encoder.mode == "learned" or (path / "encoder.safetensors").is_file():
        raise ConfigError(f"{path}: this run learned its own encoder embeddings; the authors' code always encodes "
                          f"with a frozen pretrained encoder, so the export would not reproduce this model")
    step = int(ckpt.read_meta(path)["step"])
    params = to_authors(ckpt.load_tensors(path, "model"))
    ema = to_authors(ckpt.load_tensors(path, "ema")) if (path / "ema.safetensors").is_file() else params
    infer_architecture(params, what=str(path))  # what we write must read back as an ELF checkpoint
    if cfg.encoder.source != "t5-small":
        note(f"note: this run's encoder is {cfg.encoder.source}; the authors' code builds t5-small's, so their "
             f"loader accepts this file only with a config naming the same encoder")
    run_dir = path.parent.parent
    provenance = read_provenance(run_dir) or {}
    epoch = provenance.get("epoch") if provenance.get("step") == step else None
    payload = {"params": params, "ema_params1": ema,
               "opt_state": _opt_state(params, cfg.optim.peak_lr(cfg.train.batch_size)),
               "lr_scheduler": None, "step": step, "epoch": int(epoch or 0), "dropout_rng": None,
               "grad_accum_buffers": {}}
    payload[CARRIED_KEY] = carried_entry(cfg)  # what `elfctl import` needs; their loader ignores it
    target = (Path(out) if out is not None else run_dir / "authors") / f"checkpoint_{step}"
    with atomic_open(target, "wb") as f:
        torch.save(payload, f)
    note("note: the export is for sampling and evaluation in the authors' code; it holds no optimizer moments or "
         "scheduler state, so continue training in elfctl, not in their trainer")
    return target

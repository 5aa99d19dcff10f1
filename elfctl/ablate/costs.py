"""What a variant costs, beside how good its samples are: the network's parameters and model FLOPs per training
step (from its family: ``elfctl.train.flops`` for ELF, the DiT count for MDLM), and per sampling run the forward
passes (NFE, from the samples header) and the seconds per sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from elfctl.rundir.names import CONFIG_NAME

_MODEL_COSTS: dict[str, dict] = {}


def model_costs(run_dir: Path) -> dict:
    """``{"family", "params", "train_flops_per_step"}`` of the newest checkpoint's network (built on the meta
    device: only shapes are read). Trainable network parameters only: ELF's frozen encoder is not counted."""
    key = str(Path(run_dir).resolve())
    if key in _MODEL_COSTS:
        return _MODEL_COSTS[key]
    import torch

    from elfctl.config import load_resolved
    from elfctl.family import load_family
    from elfctl.model import count_parameters
    from elfctl.rundir import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(Path(run_dir))
    if latest is None:
        return {}
    cfg, meta = load_resolved(latest / CONFIG_NAME), ckpt.read_meta(latest)
    family = load_family(cfg.model.family)
    with torch.device("meta"):
        net = family.build_network(cfg, latent_dim=meta.get("latent_dim"), vocab_size=meta["vocab_size"])
    flops = family.train_flops(net, cfg) if callable(getattr(family, "train_flops", None)) else None
    out = {"family": cfg.model.family, "params": count_parameters(net),
           "train_flops_per_step": flops}
    _MODEL_COSTS[key] = out
    return out


def sampling_costs(samples: Sequence[Path]) -> dict:
    """``{"nfe", "seconds_per_sample"}`` over the samples files of one variant (the seeds' mean time)."""
    nfe, seconds, count = None, 0.0, 0
    for path in samples:
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline())
        nfe = header.get("nfe", nfe)
        if header.get("wall_time_s") is not None and header.get("num_samples"):
            seconds += header["wall_time_s"]
            count += header["num_samples"]
    return {"nfe": nfe, "seconds_per_sample": seconds / count if count else None}


def fmt_count(value: Optional[float]) -> str:
    """19.72M / 1.36e11: how the table prints parameters and FLOPs."""
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value < 1e9 else f"{value:.3g}"

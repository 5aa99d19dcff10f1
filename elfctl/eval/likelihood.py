"""``--metric nelbo``: a likelihood bound of the model behind a samples file, on its recipe's held-out split.

Samples say which checkpoint drew them (the header's ``checkpoint``, ``ema``); this loads those weights and asks
the model's family for its bound (:mod:`elfctl.family`: ``likelihood``). MDLM gives its validation NELBO per
token, ``exp`` of which bounds the perplexity from above (in expectation). ELF, a flow in embedding space, has no
such bound: asking for one is an error naming the family.
"""

from __future__ import annotations

from typing import Callable, Optional

from elfctl.errors import ConfigError


def has_likelihood(family: str) -> bool:
    from elfctl.family import load_family

    return callable(getattr(load_family(family), "likelihood", None))


def check_likelihood(family: str) -> None:
    if not has_likelihood(family):
        raise ConfigError(f"--metric nelbo: model.family {family} has no likelihood bound (mdlm has); drop nelbo "
                          f"from --metric")


def score_likelihood(header: dict, *, device: Optional[str] = None, batch_size: int = 64,
                     max_examples: Optional[int] = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """The bound of the checkpoint that wrote ``header`` (the same weights: EMA or raw)."""
    from elfctl.family import load_family
    from elfctl.sampling.loading import load_for_sampling
    from elfctl.rundir.device import pick_device

    ref = header.get("checkpoint")
    if not ref:
        raise ConfigError("--metric nelbo: the samples header names no checkpoint (samples written by elfctl sample "
                          "have one)")
    dev = pick_device(device or "auto", what="--device")
    loaded = load_for_sampling(ref, ema=header.get("ema", True), device=dev, log=log)
    check_likelihood(loaded.cfg.model.family)
    res = load_family(loaded.cfg.model.family).likelihood(loaded, device=dev, batch_size=batch_size,
                                                          max_examples=max_examples, log=log)
    return {**res, "checkpoint": str(loaded.checkpoint), "family": loaded.cfg.model.family}

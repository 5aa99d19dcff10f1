"""The table of model families: what ``model.family`` may name, and what each family provides.

A family is the part of elfctl that knows one kind of model: ELF's continuous flow in embedding space, MDLM's
masked discrete diffusion, or one a user adds. Training, sampling and evaluation never name a family; they look it
up here by the recipe's ``model.family`` and call what it provides (an object, imported on first use):

* ``build_network(cfg, *, latent_dim, vocab_size) -> nn.Module`` — the network of a recipe;
* ``objective(cfg, data, device) -> callable`` — the loss of one batch, called as
  ``objective(model, x, input_ids, attention_mask, cond_mask, drop_cond=..., helper_model=...)`` and returning a
  :class:`~elfctl.objective.LossOutput` (``x``: the clean latents, or None for a family that trains on token ids);
* ``sampler(loaded, sample, model)`` — the sampler ``sample.sampler`` names (one of :attr:`FamilyEntry.samplers`)
  for a loaded checkpoint (:class:`elfctl.sampling.loading.Loaded`) and its network ``model`` (compiled or not),
  with ``sample(n, length, latent_dim, *, seed, device, cond, trajectory_steps)`` returning a result with
  ``token_ids``, ``nfe``, ``rows``, ``trajectory`` and ``trajectory_passes`` (optionally ``nfe_breakdown``); a
  sampler whose intermediate states are not plain token ids may offer ``trajectory_text(ids) -> str``;
* ``sampler_record(sample) -> dict`` — the settings that changed the draws, for the samples header;
* a family with ``data == "tokens"``: ``vocab_size(tokenizer)``, the rows its network models (the trainer builds no
  encoder for it, and its objective gets ``x = None``);
* optionally ``likelihood(loaded, *, device, ...)`` (a bound on the held-out likelihood, for ``elfctl eval --metric
  nelbo``) and ``train_flops(model, cfg)`` (model FLOPs of one training step, for ``elfctl ablate``).

The entry itself (:class:`FamilyEntry`) holds only names, so that checking a recipe (``elfctl.config``) stays free
of torch. A new family is one :func:`register_family` call; nothing in ``train/``, ``sampling/`` or ``commands/``
changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Union

from elfctl.errors import ConfigError

DATA_KINDS = ("latents", "tokens")


@dataclass(frozen=True)
class FamilyEntry:
    name: str
    implementation: Union[str, Callable[[], Any]]   # "module:attribute", imported on first use, or a factory
    samplers: tuple[str, ...]                       # the sample.sampler values it accepts; the first is its default
    data: str = "latents"                           # what a batch must carry: encoder latents, or token ids only
    tasks: tuple[str, ...] = ("unconditional", "conditional")
    summary: str = ""


_FAMILIES: dict[str, FamilyEntry] = {}
_LOADED: dict[str, Any] = {}


def register_family(entry: FamilyEntry, *, replace: bool = False) -> None:
    """Add a family to the table (``replace`` to redefine one, e.g. in a test)."""
    if entry.data not in DATA_KINDS:
        raise ValueError(f"family {entry.name}: data must be one of {', '.join(DATA_KINDS)}, got {entry.data!r}")
    if not entry.samplers:
        raise ValueError(f"family {entry.name}: needs at least one sampler")
    if entry.name in _FAMILIES and not replace:
        raise ValueError(f"family {entry.name} is already registered")
    _FAMILIES[entry.name] = entry
    _LOADED.pop(entry.name, None)


def unregister_family(name: str) -> None:
    _FAMILIES.pop(name, None)
    _LOADED.pop(name, None)


def family_entry(name: str) -> FamilyEntry:
    """The entry of ``name``; an unknown name is one line listing the valid ones."""
    if name not in _FAMILIES:
        import difflib

        close = difflib.get_close_matches(str(name), list(_FAMILIES), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"model.family: {name!r} is not valid{hint}; choose one of {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def load_family(name: str) -> Any:
    """The implementation object of family ``name`` (imported once)."""
    entry = family_entry(name)
    if name not in _LOADED:
        impl = entry.implementation
        if isinstance(impl, str):
            module, attr = impl.split(":")
            impl = getattr(importlib.import_module(module), attr)
        else:
            impl = impl()
        _LOADED[name] = impl
    return _LOADED[name]


def all_sampler_names() -> tuple[str, ...]:
    """Every sampler name some family accepts (what ``sample.sampler`` may be before a model is known)."""
    return tuple(dict.fromkeys(s for e in _FAMILIES.values() for s in e.samplers))


def check_sampler(family: str, sampler: str, what: str = "sample.sampler") -> None:
    entry = family_entry(family)
    if sampler not in entry.samplers:
        raise ConfigError(f"{what}: {sampler!r} is not a sampler of model.family {family}; choose one of "
                          f"{', '.join(entry.samplers)}")


def check_config(cfg) -> None:
    """The recipe-level rules of a family: a known name, one of its samplers, a task it trains."""
    entry = family_entry(cfg.model.family)
    check_sampler(entry.name, cfg.sample.sampler)
    if cfg.data.task not in entry.tasks:
        raise ConfigError(f"data.task: {cfg.data.task} is not supported by model.family {entry.name}; it trains "
                          f"{' or '.join(entry.tasks)}")


register_family(FamilyEntry(
    "elf", "elfctl.families.elf:FAMILY", samplers=("sde", "ode"), data="latents",
    summary="Embedded Language Flows: flow matching in a frozen encoder's embedding space"))
register_family(FamilyEntry(
    "mdlm", "elfctl.families.mdlm:FAMILY", samplers=("ddpm_cache", "ddpm"), data="tokens",
    tasks=("unconditional",), summary="masked diffusion language model (absorbing [MASK], SUBS, NELBO)"))

"""Sampler settings, derived from their one definition: the ``sample`` section (:class:`elfctl.config.SampleConfig`).

Everything about a setting (name, type, default, help, range, whether it changes the draws) is written once, in
that dataclass. From it come:

- :func:`sample_keys`: the keys other commands may override (``SampleRequest.settings``; ``elfctl ablate``);
- :func:`cli_flag` / :func:`sample_options`: the ``elfctl sample`` options (``--sc-cfg`` for ``sc_cfg``);
- :func:`resolve`: overrides over a recipe's section, validated exactly as recipes are (type, finiteness, choices,
  range), plus the two rules that tie settings together (``sampler``/``gamma`` and ``cfg`` of an unconditional
  model);
- :func:`header_record`: the settings that change the draws, for the samples header.

Adding a sampler knob is one field in ``SampleConfig``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Optional

from elfctl.config import SampleConfig, check_value
from elfctl.errors import ConfigError
from elfctl.family import all_sampler_names, check_sampler

SECTION = "sample"
EULER_SAMPLERS = ("ode", "sde")  # one sampler, two names: sde needs gamma > 0, ode is gamma 0


def sample_keys() -> tuple[str, ...]:
    """Every key of the ``sample`` section, in definition order: the keys ``SampleRequest.settings`` accepts."""
    return tuple(f.name for f in dataclasses.fields(SampleConfig))


def draw_keys() -> tuple[str, ...]:
    """The keys that change what is drawn (recorded in the samples header's ``sampler`` record)."""
    return tuple(f.name for f in dataclasses.fields(SampleConfig) if f.metadata.get("draw"))


def cli_flag(key: str) -> str:
    """``sc_cfg`` -> ``--sc-cfg``."""
    return "--" + key.replace("_", "-")


def sample_options() -> list[tuple[str, str, type, str]]:
    """(key, flag, value type, help) per setting, for building the ``elfctl sample`` options."""
    hints = typing.get_type_hints(SampleConfig)
    return [(f.name, cli_flag(f.name), hints[f.name], f.metadata.get("help", ""))
            for f in dataclasses.fields(SampleConfig)]


def label(key: str, flags: bool) -> str:
    """How a message names a setting: the flag (``--gamma``) for the CLI, else the key path (``sample.gamma``)."""
    return cli_flag(key) if flags else f"{SECTION}.{key}"


def check_overrides(overrides: Mapping[str, Any], *, flags: bool = False) -> dict[str, Any]:
    """Each override coerced and checked alone, as a recipe key would be; before anything loads."""
    valid = sample_keys()
    out = {}
    for key, value in overrides.items():
        if key not in valid:
            import difflib

            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown sample setting '{key}'{hint}; valid: {', '.join(valid)}")
        out[key] = check_value(SECTION, key, value, name=label(key, flags))
        if key == "sampler" and out[key] not in all_sampler_names():
            raise ConfigError(f"{label(key, flags)}: {out[key]!r} is not valid; choose one of "
                              f"{', '.join(all_sampler_names())}")
    return out


def _sampler_and_gamma(base: SampleConfig, over: dict, flags: bool) -> dict:
    """One meaning for the pair: sde needs gamma > 0, ode is gamma 0. Given alone, each sets the other."""
    over = dict(over)
    s_name, g_name = label("sampler", flags), label("gamma", flags)
    sampler = over.get("sampler", base.sampler)
    if sampler not in EULER_SAMPLERS:  # gamma is the churn of the Euler sampler only
        if "gamma" in over:
            raise ConfigError(f"{g_name}: the {sampler} sampler has no churn (gamma is for the ode / sde "
                              f"samplers); drop {g_name}")
        return over
    if "sampler" in over and "gamma" in over:
        if (over["sampler"] == "sde") != (over["gamma"] > 0):
            raise ConfigError(f"{s_name} {over['sampler']} contradicts {g_name} {over['gamma']:g}: the SDE needs "
                              f"gamma > 0 and gamma 0 is the ODE; give one of them")
    elif "gamma" in over:
        over["sampler"] = "sde" if over["gamma"] > 0 else "ode"
    elif "sampler" in over:
        if over["sampler"] == "ode":
            over["gamma"] = 0.0
        elif base.gamma <= 0:
            raise ConfigError(f"{s_name} sde: the recipe's sample.gamma is {base.gamma:g}, which is the ODE; give "
                              f"{g_name} > 0 too (Table 1 uses 1.5)")
    elif base.sampler == "sde" and base.gamma <= 0:
        raise ConfigError(f"sample.sampler: sde with sample.gamma {base.gamma:g} is the ODE; set sample.gamma > 0 "
                          f"or sample.sampler=ode ({label('gamma', flags)} overrides it)")
    elif base.sampler == "ode":
        over["gamma"] = 0.0  # the ODE has no churn: the header records what ran
    return over


def _unconditional_cfg(base: SampleConfig, over: dict, conditional: bool, flags: bool) -> tuple[dict, dict]:
    """An unconditional model's only condition is its own self-conditioning: a ``cfg`` override is its SC-CFG."""
    over = dict(over)
    mapped = not conditional and "cfg" in over
    if mapped:
        if "sc_cfg" in over and over["sc_cfg"] != over["cfg"]:
            raise ConfigError(f"{label('cfg', flags)} {over['cfg']:g} and {label('sc_cfg', flags)} {over['sc_cfg']:g} "
                              f"set the same guidance of this unconditional model (its self-conditioning) to "
                              f"different values; give one")
        over["sc_cfg"], over["cfg"] = over["cfg"], 1.0
    cfg = over.get("cfg", base.cfg)
    guidance = {"cfg": cfg, "sc_cfg": over.get("sc_cfg", base.sc_cfg),
                "cfg_applies_to": "condition" if conditional else "self-conditioning",
                "cfg_flag_set": "sc_cfg" if mapped else ("cfg" if "cfg" in over else None)}
    return over, guidance


def resolve(base: SampleConfig, overrides: Mapping[str, Any], *, conditional: bool,
            flags: bool = False, family: str = "elf") -> tuple[SampleConfig, dict]:
    """The settings a job runs with: ``overrides`` (by key) over the recipe's section ``base``.

    Returns the resolved section and the header's guidance record. ``flags``: name settings by their CLI flag in
    messages (``--gamma``) instead of their key path (``sample.gamma``). ``family``: the model's family, whose
    samplers ``sampler`` must name.
    """
    over = check_overrides(overrides, flags=flags)
    if "sampler" in over:
        check_sampler(family, over["sampler"], what=label("sampler", flags))
    over, guidance = _unconditional_cfg(base, over, conditional, flags)
    over = _sampler_and_gamma(base, over, flags)
    return dataclasses.replace(base, **over), guidance


def header_record(sample: SampleConfig, family: Optional[str] = None) -> dict[str, Any]:
    """The settings that change the draws, as the samples header records them: the shared ones, plus those only
    ``family``'s samplers read (``noise_removal`` for mdlm)."""
    own = {f.name for f in dataclasses.fields(SampleConfig) if f.metadata.get("family") in (None, family)}
    return {k: getattr(sample, k) for k in draw_keys() if k in own}

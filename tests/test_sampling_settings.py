"""Sampler settings come from one definition, the ``sample`` section: keys, CLI options, validation, header."""

import dataclasses
import inspect
import math
import typing
from typing import Optional

import pytest

from elfctl.config import SampleConfig, load_config
from elfctl.errors import ConfigError
from elfctl.flow import FlowPath
from elfctl.sampling import settings as S


def test_keys_options_and_header_come_from_the_dataclass():
    fields = [f.name for f in dataclasses.fields(SampleConfig)]
    assert S.sample_keys() == tuple(fields)
    assert [o[1] for o in S.sample_options()] == ["--" + f.replace("_", "-") for f in fields]
    assert set(S.draw_keys()) == {"steps", "sampler", "gamma", "time_grid", "cfg", "sc_cfg",
                                 "noise_removal"}
    assert S.header_record(SampleConfig(steps=7)) == {"steps": 7, "sampler": "sde", "gamma": 1.5,
                                                      "time_grid": "logit_normal", "cfg": 1.0, "sc_cfg": 3.0}


def test_the_sample_command_has_one_option_per_setting():
    from elfctl.commands.sample import sample

    params = inspect.signature(sample).parameters
    for key in S.sample_keys():
        assert f"sample__{key}" in params, key
        assert params[f"sample__{key}"].default.param_decls[0].startswith(S.cli_flag(key))
    assert "settings" not in params


def test_a_new_field_becomes_an_option_by_itself(monkeypatch):
    from elfctl.commands import sample as cmd

    extra = ("tempo", "--tempo", float, "A made-up knob.")
    real = S.sample_options
    monkeypatch.setattr(S, "sample_options", lambda: [*real(), extra])  # as if SampleConfig had a field `tempo`
    got = {}

    def command(run: Optional[str] = None, settings: Optional[dict] = None):
        got.update(settings)

    wrapped = cmd._with_sample_options(command)
    assert "sample__tempo" in inspect.signature(wrapped).parameters
    wrapped(run=None, sample__tempo=0.5)
    assert got == {"tempo": 0.5}


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(SampleConfig)
                                 if typing.get_type_hints(SampleConfig)[f.name] is float])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_setting_must_be_finite(key, bad):
    with pytest.raises(ConfigError, match=f"^--{key.replace('_', '-')}: .*not a finite number"):
        S.check_overrides({key: bad}, flags=True)
    with pytest.raises(ConfigError, match=f"^sample.{key}: "):
        S.check_overrides({key: bad})


def test_overrides_are_checked_like_recipe_keys():
    with pytest.raises(ConfigError, match=r"unknown sample setting 'stepz' \(did you mean 'steps'\?\)"):
        S.check_overrides({"stepz": 3})
    with pytest.raises(ConfigError, match=r"^sample.steps: 0 is out of range"):
        S.check_overrides({"steps": 0})
    with pytest.raises(ConfigError, match=r"^--sampler: 'heun' is not valid"):
        S.check_overrides({"sampler": "heun"}, flags=True)
    assert S.check_overrides({"steps": 4.0, "gamma": 1}) == {"steps": 4, "gamma": 1.0}


ODE, SDE = SampleConfig(sampler="ode", gamma=0.0), SampleConfig(sampler="sde", gamma=1.5)


@pytest.mark.parametrize("base,over,want", [
    (ODE, {"gamma": 1.5}, ("sde", 1.5)),          # γ > 0 means the SDE
    (SDE, {"gamma": 0.0}, ("ode", 0.0)),
    (SDE, {"sampler": "ode"}, ("ode", 0.0)),      # the ODE has no churn: recorded as 0
    (SDE, {"sampler": "sde"}, ("sde", 1.5)),
    (ODE, {"sampler": "sde", "gamma": 1.0}, ("sde", 1.0)),
    (SampleConfig(sampler="ode"), {}, ("ode", 0.0)),  # a recipe's ode with the default gamma: the ODE
])
def test_sampler_and_gamma_have_one_meaning(base, over, want):
    sample, _ = S.resolve(base, over, conditional=False)
    assert (sample.sampler, sample.gamma) == want


def test_an_sde_that_would_run_the_ode_is_an_error():
    with pytest.raises(ConfigError, match=r"^--sampler sde: the recipe's sample.gamma is 0.*--gamma > 0"):
        S.resolve(ODE, {"sampler": "sde"}, conditional=False, flags=True)
    with pytest.raises(ConfigError, match=r"^--sampler ode contradicts --gamma 1"):
        S.resolve(SDE, {"sampler": "ode", "gamma": 1.0}, conditional=False, flags=True)
    with pytest.raises(ConfigError, match=r"^sample.sampler sde contradicts sample.gamma 0"):
        S.resolve(SDE, {"sampler": "sde", "gamma": 0.0}, conditional=False)
    with pytest.raises(ConfigError, match=r"^sample.sampler: sde with sample.gamma 0 is the ODE"):
        S.resolve(SampleConfig(sampler="sde", gamma=0.0), {}, conditional=False)


def test_cfg_of_an_unconditional_model_is_its_sc_cfg():
    sample, g = S.resolve(SampleConfig(cfg=1.0, sc_cfg=3.0), {"cfg": 2.0}, conditional=False)
    assert (sample.cfg, sample.sc_cfg) == (1.0, 2.0)
    assert g == {"cfg": 1.0, "sc_cfg": 2.0, "cfg_applies_to": "self-conditioning", "cfg_flag_set": "sc_cfg"}
    sample, g = S.resolve(SampleConfig(), {"cfg": 2.0}, conditional=True)
    assert (sample.cfg, sample.sc_cfg, g["cfg_applies_to"], g["cfg_flag_set"]) == (2.0, 3.0, "condition", "cfg")
    with pytest.raises(ConfigError, match="same guidance"):
        S.resolve(SampleConfig(), {"cfg": 2.0, "sc_cfg": 3.0}, conditional=False, flags=True)


def test_flow_path_from_config_is_the_recipes():
    cfg = load_config(None, ["model.prediction=v", "objective.noise_scale=1.5", "objective.t_eps=0.1"])
    assert FlowPath.from_config(cfg) == FlowPath(noise_scale=1.5, t_eps=0.1, prediction="v")
    assert FlowPath.from_config(load_config(None)) == FlowPath()

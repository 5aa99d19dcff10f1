"""Ablation specs: every built-in loads; bad user specs fail with one clear message."""

import pytest

from elfctl.ablate.runner import sample_flags
from elfctl.ablate.spec import builtin_specs, load_spec
from elfctl.cli import main
from elfctl.config import load_config
from elfctl.errors import ConfigError


@pytest.mark.parametrize("name", list(builtin_specs()))
def test_builtin_spec_loads_and_its_quick_recipe_validates(name):
    spec = load_spec(name)
    recipe, overrides = spec.scale("quick")
    for v in spec.variants:
        load_config(recipe, [*overrides, *v.train, *v.sample])
    assert spec.finding


def test_the_five_builtins_exist():
    assert set(builtin_specs()) == {"xpred-vs-vpred", "sde-vs-ode", "guidance", "steps", "encoder"}


def test_unknown_ablation_has_a_hint():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_spec("stepz")


def test_user_spec_with_a_non_sample_key_in_sample_is_rejected(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, sample: [train.steps=3]}\n")
    with pytest.raises(ConfigError, match="not a sample setting"):
        load_spec(str(p))


def test_user_spec_unknown_scale(tmp_path, capsys):
    p = tmp_path / "mine.yaml"
    p.write_text("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, train: [train.steps=3]}\n")
    assert main(["ablate", str(p), "--scale", "paper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no scale 'paper'" in err[0]


def test_sample_flags_pass_cfg_only_for_conditional_models():
    unc = sample_flags(load_config(None, ["sample.sc_cfg=2.5"]))
    assert "--cfg" not in unc and unc[unc.index("--sc-cfg") + 1] == "2.5"
    cond = sample_flags(load_config(None, ["data.task=conditional", "sample.cfg=2.0"]))
    assert cond[cond.index("--cfg") + 1] == "2.0"

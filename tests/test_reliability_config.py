"""Non-finite numbers are refused everywhere a float enters the config: recipes, overrides, YAML .nan/.inf."""

import dataclasses
import typing

import pytest

from elfctl.cli import main
from elfctl.config import SECTIONS, _base_type, check_value, config_from_dict, load_config
from elfctl.errors import ConfigError


def _float_fields():
    """Every float field of every section, read from the dataclasses (a new field is covered automatically)."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if _base_type(hints[f.name])[0] is float and f.metadata.get("finite", True):
                yield f"{section}.{f.name}"


FLOAT_FIELDS = sorted(_float_fields())


def test_the_float_fields_are_found():
    # a sanity floor: the known non-finite reports of the issue are among them
    assert {"optim.lr", "sample.gamma", "objective.noise_scale", "sample.cfg", "encoder.latent_mean"} <= set(FLOAT_FIELDS)
    assert len(FLOAT_FIELDS) >= 28


@pytest.mark.parametrize("key", FLOAT_FIELDS)
def test_every_float_field_refuses_nan_and_infinities(key):
    section, name = key.split(".")
    for text in ("nan", ".nan", ".NaN", "inf", ".inf", "-.inf", "-inf", "1e400"):
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}={text}"])
        msg = str(e.value)
        assert msg.startswith(f"{key}:") and "\n" not in msg, msg
    # a recipe mapping carrying a float NaN (YAML `.nan` after loading) is refused the same way
    with pytest.raises(ConfigError, match=f"^{key}: nan is not a finite number"):
        config_from_dict({section: {name: float("nan")}})


def test_yaml_nan_in_a_recipe_file_exits_2_naming_the_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sample:\n  gamma: .inf\noptim:\n  lr: .nan\n")
    assert main(["recipes", "show", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sample.gamma: inf is not a finite number" in err[0]


def test_range_checks_cannot_be_passed_by_nan():
    # NaN compares false with everything: a range check written as `value < lo` lets it through
    with pytest.raises(ConfigError, match="--cfg: nan is not a finite number"):
        check_value("sample", "cfg", "nan", name="--cfg")
    with pytest.raises(ConfigError, match=r"--cfg: -1.0 is out of range; must be >= 0"):
        check_value("sample", "cfg", -1, name="--cfg")
    assert check_value("sample", "cfg", "2.5", name="--cfg") == 2.5
    assert check_value("sample", "cfg", 0, name="--cfg") == 0.0


def test_an_integer_too_large_for_a_float_is_one_line():
    with pytest.raises(ConfigError, match="optim.blr: must be a number"):
        load_config(None, [f"optim.blr={10 ** 400}"])


def test_a_finite_number_beyond_float32_is_refused_before_it_meets_a_tensor():
    # found by the fuzz test: `sample --cfg 1e40` passed validation and crashed sampling with a RuntimeError
    with pytest.raises(ConfigError, match=r"--cfg: 1e\+40 is too large; numbers must fit a float32"):
        check_value("sample", "cfg", "1e40", name="--cfg")
    assert check_value("sample", "cfg", "3e38", name="--cfg") == 3e38


def test_an_override_with_a_newline_is_still_one_line():
    # found by the fuzz test: the raw override text went into the message
    with pytest.raises(ConfigError) as e:
        load_config(None, ["a\nb=1"])
    assert "\n" not in str(e.value) and "'a\\nb=1'" in str(e.value)

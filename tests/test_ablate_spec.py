"""Ablation specs: every built-in loads; user specs are as strict as recipes (one line, file and place named)."""

import re
from pathlib import Path

import pytest

from elfctl.ablate.spec import builtin_specs, check_scale, load_spec
from elfctl.cli import main
from elfctl.config import load_config
from elfctl.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "ABLATIONS.md"


@pytest.mark.parametrize("name", list(builtin_specs()))
def test_builtin_spec_loads_and_its_quick_recipe_validates(name):
    spec = load_spec(name)
    recipe, overrides = spec.scale("quick")
    for v in spec.variants:
        load_config(recipe, [*overrides, *v.train, *v.sample])
    check_scale(spec, "quick")
    assert spec.finding


def test_the_builtins_exist():
    assert {"xpred-vs-vpred", "sde-vs-ode", "guidance", "steps", "encoder"} <= set(builtin_specs())


def test_unknown_ablation_has_a_hint():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_spec("stepz")


def _spec(tmp_path, text):
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, message", [
    # the case: `sampel:` used to be accepted and the variant ran with the defaults
    ("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, sampel: [sample.steps=8]}\n",
     "variants[0]: unknown key 'sampel' (did you mean 'sample'?)"),
    ("scales: {quick: {recipe: quickstart}}\nvarients:\n  - {name: a}\n", "unknown key 'varients' (did you mean "
                                                                         "'variants'?)"),
    ("scales: {quick: {recipe: quickstart, overides: [train.steps=3]}}\nvariants:\n  - {name: a}\n",
     "scales.quick: unknown key 'overides' (did you mean 'overrides'?)"),
    ("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, sample: [sample.stepz=8]}\n",
     "unknown sample setting 'sample.stepz' (did you mean 'steps'?)"),
    ("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, sample: [train.steps=3]}\n",
     "'train.steps' is not a sample setting"),
    ("scales: {quick: {recipe: quickstart}}\nmetrics: [genpl]\nvariants:\n  - {name: a}\n",
     "metrics: 'genpl' is not valid"),
    ("scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a}\n  - {name: a}\n", "'a' is used twice"),
    ("scales: {quick: {recipe: quickstart}}\nvariants:\n  - name: a\n    train: model.prediction=v\n",
     "variants[0].train: must be a list"),
    ("scales: {quick: {recipe: quickstart}}\nplot_x: sample.step\nvariants:\n  - {name: a}\n",
     "plot_x: unknown key 'sample.step' (did you mean 'steps'?)"),
])
def test_a_spec_mistake_is_one_line_naming_file_and_place(tmp_path, text, message):
    p = _spec(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_spec(str(p))
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_an_override_that_names_no_recipe_key_fails_before_any_work(tmp_path, capsys):
    p = _spec(tmp_path, "scales: {quick: {recipe: quickstart}}\nvariants:\n"
                        "  - {name: ok, train: [model.prediction=x]}\n  - {name: typo, train: [model.predicton=v]}\n")
    spec = load_spec(str(p))
    with pytest.raises(ConfigError, match=r"variant 'typo': unknown key 'model.predicton' \(did you mean "
                                          r"'prediction'\?\)"):
        check_scale(spec, "quick")
    assert main(["ablate", str(p), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "variant 'typo'" in err[0] and str(p) in err[0]
    assert not (tmp_path / "out").exists()   # nothing was trained


def test_user_spec_unknown_scale(tmp_path, capsys):
    p = _spec(tmp_path, "scales: {quick: {recipe: quickstart}}\nvariants:\n  - {name: a, train: [train.steps=3]}\n")
    assert main(["ablate", str(p), "--scale", "paper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no scale 'paper'" in err[0]


def test_the_documented_example_spec_loads(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/ABLATIONS.md has no ```yaml example"
    spec = load_spec(str(_spec(tmp_path, blocks[0])))
    check_scale(spec, "quick")
    assert [v.name for v in spec.variants] and spec.finding


def test_every_accepted_key_is_in_the_documented_format():
    """docs/ABLATIONS.md's key table names every key the spec loader accepts (it left out `distill`)."""
    from elfctl.ablate.spec import SCALE_KEYS, TOP_KEYS, VARIANT_KEYS

    table = "\n".join(line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `"))
    assert {re.match(r"\| `(\w+)`", line).group(1) for line in table.splitlines()} == set(TOP_KEYS)
    rows = {re.match(r"\| `(\w+)`", line).group(1): line for line in table.splitlines()}
    for key in SCALE_KEYS:
        assert re.search(rf"\b{key}:", rows["scales"]), f"scales: key '{key}' is not documented"
    for key in VARIANT_KEYS:
        assert re.search(rf"\b{key}\b", rows["variants"]), f"variants: key '{key}' is not documented"


def test_a_scale_s_seeds_replace_the_spec_s(tmp_path):
    p = _spec(tmp_path, "scales: {quick: {recipe: quickstart}, small: {recipe: quickstart, seeds: [3, 4]}}\n"
                        "seeds: [0]\nvariants:\n  - {name: a}\n")
    spec = load_spec(str(p))
    assert spec.at_scale("quick").seeds == [0]
    assert spec.at_scale("small").seeds == [3, 4] and spec.seeds == [0]   # the spec itself is unchanged


def test_a_scale_s_bad_seeds_are_one_line(tmp_path):
    p = _spec(tmp_path, "scales: {quick: {recipe: quickstart, seeds: [1, 1]}}\nvariants:\n  - {name: a}\n")
    with pytest.raises(ConfigError, match=r"scales.quick: seeds: must be a list of distinct integers"):
        load_spec(str(p))


def test_every_builtin_ablation_has_a_small_scale_that_loads():
    from elfctl.ablate.spec import builtin_specs

    for name in builtin_specs():
        spec = load_spec(name)
        assert "small" in spec.scales, name
        check_scale(spec, "small")
        assert spec.scale("small")[0] == "small"

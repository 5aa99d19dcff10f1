"""Configuration: YAML round trip, extends, overrides, and every rejection (exit 2, full key path)."""

import pytest

from elfctl.cli import main
from elfctl.config import config_from_dict, load_config, load_resolved
from elfctl.errors import ConfigError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_round_trip(tmp_path):
    cfg = load_config("owt", ["train.steps=7", "train.epochs=null"])
    p = write(tmp_path, "resolved.yaml", cfg.to_yaml())
    assert load_resolved(p) == cfg


def test_extends_deep_merges_and_chains(tmp_path):
    write(tmp_path, "base.yaml", "model: {preset: elf-b}\ntrain: {steps: 10, batch_size: 8}\n")
    write(tmp_path, "mid.yaml", "extends: base.yaml\ntrain: {steps: 20}\n")
    child = write(tmp_path, "child.yaml", "extends: mid\noptim: {blr: 0.5}\n")
    cfg = load_config(str(child))
    assert (cfg.model.preset, cfg.train.steps, cfg.train.batch_size, cfg.optim.blr) == ("elf-b", 20, 8, 0.5)


def test_shipped_recipe_extends_another():
    cfg = load_config("owt-elf-m")
    assert cfg.model.preset == "elf-m" and cfg.data.max_length == 1024 and cfg.sample.steps == 64


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("override, field, value", [
    ("train.steps=100", ("train", "steps"), 100),
    ("optim.blr=2e-4", ("optim", "blr"), 2e-4),
    ("train.bf16=false", ("train", "bf16"), False),
    ("optim.lr=null", ("optim", "lr"), None),
    ("data.dataset=my.jsonl", ("data", "dataset"), "my.jsonl"),
    ("optim.blr=1", ("optim", "blr"), 1.0),
])
def test_overrides_are_typed(override, field, value):
    cfg = load_config("quickstart", [override])
    assert getattr(getattr(cfg, field[0]), field[1]) == value


@pytest.mark.parametrize("over, message", [
    ("optim.blrr=1", "unknown key 'optim.blrr' (did you mean 'blr'?)"),
    ("optimm.blr=1", "unknown section 'optimm' (did you mean 'optim'?)"),
    ("train.steps=abc", "train.steps: must be an integer"),
    ("train.steps=1.5", "train.steps: must be an integer"),
    ("optim.blr=-1", "optim.blr: -1.0 is out of range"),
    ("objective.decoder_prob=1.5", "objective.decoder_prob: 1.5 is out of range"),
    ("train.steps=0", "train.steps: 0 is out of range"),
    ("data.max_length=0", "data.max_length: 0 is out of range"),
    ("model.preset=elf-xl", "model.preset: 'elf-xl' is not valid"),
    ("train.bf16=maybe", "train.bf16: must be true or false"),
    ("trainsteps", "expected section.key=value"),
])
def test_rejections_name_the_key_exit_2_and_print_one_line(over, message, capsys):
    assert main(["recipes", "show", "quickstart", over]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_malformed_yaml_reports_its_line(tmp_path, capsys):
    p = write(tmp_path, "bad.yaml", "model:\n  preset: elf-b\ntrain: [steps: 1\n")
    assert main(["recipes", "show", str(p)]) == 2
    err = capsys.readouterr().err
    assert "malformed YAML" in err and "line 3" in err


def test_unknown_recipe_hint_and_missing_file(capsys):
    assert main(["recipes", "show", "qickstart"]) == 2
    assert "did you mean 'quickstart'" in capsys.readouterr().err
    assert main(["recipes", "show", "nope/missing.yaml"]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="max_input_length"):
        config_from_dict({"data": {"max_length": 16, "max_input_length": 16}})
    with pytest.raises(ConfigError, match="grad_accum"):
        config_from_dict({"train": {"batch_size": 10, "grad_accum": 3}})


def test_a_union_field_reads_a_list_whatever_order_typing_cached_the_union_in():
    # typing caches equal unions: Optional[int | list[int]] made first gives Optional[list[int] | int] the order
    # (int, list[int]); a list value must still read as the list type
    from typing import Optional

    Optional[int | list[int]]  # noqa: B018 - the annotation another module may have evaluated first
    cfg = load_config(None, ["distill.rounds=[4,2,1]", "distill.round_steps=[5,6,40]"])
    assert cfg.distill.round_steps == [5, 6, 40]
    assert load_config(None, ["distill.rounds=[4,2,1]", "distill.round_steps=7"]).distill.round_steps == 7


def test_the_schema_marks_what_leaves_the_trained_model_unchanged():
    from elfctl.config import keys_with_effect

    runtime = keys_with_effect("runtime")
    assert runtime == {"train.run_dir", "train.device", "train.fsdp", "train.grad_accum", "train.micro_batch_size",
                       "train.dist_timeout_min", "train.compile", "model.gradient_checkpointing",
                       "data.num_workers", "data.data_dir", "data.prefetch_factor", "data.tokenize_workers",
                       "train.loggers", "train.wandb_project"}
    record = keys_with_effect("record")
    assert {"train.save_every", "train.keep_last", "train.log_every", "data.shard_size"} <= record
    assert not runtime & record
    # nothing that shapes the model, its data or its optimisation is marked
    assert not {"model.depth", "optim.lr", "train.batch_size", "train.steps", "train.seed", "data.max_length",
                "objective.p_mean"} & (runtime | record)
    with pytest.raises(ValueError, match="unknown effect"):
        keys_with_effect("cosmetic")


def test_config_differences_walks_sections_and_skips_what_it_is_told():
    from elfctl.config import config_differences

    a = {"name": "x", "model": {"depth": 2, "dropout": 0.0}, "sample": {"steps": 8}}
    b = {"name": "y", "model": {"depth": 3, "dropout": 0.1}, "sample": {"steps": 16}, "extra": 1}
    assert config_differences(a, b) == [("extra", None, 1), ("model.depth", 2, 3), ("model.dropout", 0.0, 0.1),
                                        ("name", "x", "y"), ("sample.steps", 8, 16)]
    assert config_differences(a, b, ignore={"sample", "name", "extra", "model.dropout"}) == [("model.depth", 2, 3)]
    assert config_differences(a, a) == []

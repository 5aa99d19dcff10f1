"""Every shipped recipe validates, says how to run it and what it targets, and ships as package data."""

import pytest

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.recipes import recipes_dir, shipped_recipes

EXPECTED = {"owt", "owt-elf-m", "owt-elf-l", "wmt14-de-en", "xsum", "quickstart", "quickstart-cond"}


def test_all_expected_recipes_ship():
    assert EXPECTED <= set(shipped_recipes())
    assert all(p.parent == recipes_dir() for p in shipped_recipes().values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_validates_and_documents_itself(name):
    cfg = load_config(name)
    assert cfg.paper and cfg.description
    header = shipped_recipes()[name].read_text().splitlines()[0]
    assert header.startswith("#")
    assert "elfctl" in shipped_recipes()[name].read_text().split("description:")[0]


def test_paper_recipes_keep_hub_ids_and_paper_settings():
    owt = load_config("owt")
    assert (owt.encoder.source, owt.eval.judge, owt.model.preset) == ("t5-small", "gpt2-large", "elf-b")
    assert (owt.sample.sampler, owt.sample.steps, owt.sample.gamma, owt.sample.sc_cfg) == ("sde", 32, 1.5, 3.0)
    assert (owt.objective.p_mean, owt.objective.noise_scale, owt.objective.decoder_prob) == (-1.5, 2.0, 0.2)
    wmt = load_config("wmt14-de-en")
    assert (wmt.data.pad_token, wmt.objective.label_drop_prob, wmt.sample.cfg) == ("eos", 0.1, 2.0)


def test_recipes_ls_lists_every_recipe(capsys):
    assert main(["recipes", "ls"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPECTED)

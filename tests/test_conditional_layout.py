"""Conditional examples laid out as the authors' code lays them out, and what follows from the layout.

The expected arrays below are written out by hand from the authors' rules (their ``load_jsonl_dataset`` and
collate function): condition and target tokenized with no special tokens, the condition cut to max_input_length,
``[c ; y]`` cut to max_length and padded with the pad id (eos), ``attention_mask`` = the kept ids, ``cond_mask`` =
the kept condition, and the encoder mask ``(cond_i & cond_j) | (~cond_i & valid_j)``.

The tiny word-level tokenizer (tests/conftest.py) numbers [PAD] 0, [UNK] 1, [SEP] 2 (its eos), then the words:
the 3, a 4, cat 5, dog 6, sat 7, ran 8, on 9, mat 10, park 11, big 12, small 13, red 14.
"""

import json

import pytest
import torch

from elfctl.config import load_config, load_resolved
from elfctl.data.tokenize import SequenceBuilder, encoder_attention_mask, load_tokenizer
from elfctl.errors import ConfigError

T, F = True, False
PAIRS = [("the big red cat", "a dog ran on the mat"),  # condition longer than max_input_length; target overflows
         ("the cat", ""),                              # empty target
         ("a dog", "sat on")]                          # both fit
# max_length 8, max_input_length 3, pad = eos = 2
IDS = [[3, 12, 14, 4, 6, 8, 9, 3],
       [3, 5, 2, 2, 2, 2, 2, 2],
       [4, 6, 7, 9, 2, 2, 2, 2]]
VALID = [[T, T, T, T, T, T, T, T],
         [T, T, F, F, F, F, F, F],
         [T, T, T, T, F, F, F, F]]
COND = [[T, T, T, F, F, F, F, F],
        [T, T, F, F, F, F, F, F],
        [T, T, F, F, F, F, F, F]]
# the encoder mask of the third example: condition rows see the condition, every other row sees the valid ids
ENC_3 = [[T, T, F, F, F, F, F, F]] * 2 + [[T, T, T, T, F, F, F, F]] * 6

LAYOUT = ["data.task=conditional", "data.max_length=8", "data.max_input_length=3", "data.pad_token=eos"]


def _setup(tiny_encoder_dir, *over):
    cfg = load_config(None, [f"encoder.source={tiny_encoder_dir}", *LAYOUT, *over])
    return cfg, load_tokenizer(cfg.encoder)


def _batch(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_batch_matches_the_authors_rules_id_for_id_and_mask_for_mask(tiny_encoder_dir):
    cfg, tok = _setup(tiny_encoder_dir)
    assert cfg.data.cond_layout == "authors"  # the default
    b = SequenceBuilder(tok, cfg.data)
    batch = _batch([b.pair(c, y) for c, y in PAIRS])
    assert batch["input_ids"].tolist() == IDS
    assert batch["attention_mask"].tolist() == VALID
    assert batch["cond_mask"].tolist() == COND
    enc = encoder_attention_mask(batch["attention_mask"], batch["cond_mask"])
    assert enc[2].tolist() == ENC_3
    assert (b.stats.cond_truncated, b.stats.target_truncated) == (1, 1)
    assert b.stats.summary(cfg.data) == ("1 of 3 inputs truncated to 3 tokens (data.max_input_length), 1 targets "
                                         "truncated to fit max_length 8, 0 blank skipped")


def test_the_token_cache_gives_the_same_examples(tiny_encoder_dir, tmp_path):
    from elfctl.data.tokenized import build_tokenized

    data = tmp_path / "pairs.jsonl"
    rows = [PAIRS[0], PAIRS[2]]  # a blank target is a blank record, skipped by the text readers
    data.write_text("".join(json.dumps({"input": c, "output": y}) + "\n" for c, y in rows))
    cfg, tok = _setup(tiny_encoder_dir, f"data.dataset={data}", f"data.data_dir={tmp_path / 'cache'}",
                      "data.val_fraction=0.0")
    ds = build_tokenized(cfg, "train", tok)
    assert len(ds) == 2
    got = sorted((ds[i]["input_ids"].tolist(), ds[i]["attention_mask"].tolist(), ds[i]["cond_mask"].tolist())
                 for i in range(len(ds)))
    assert got == sorted([(IDS[0], VALID[0], COND[0]), (IDS[2], VALID[2], COND[2])])


def test_the_eos_layout_is_kept_for_runs_trained_with_it(tiny_encoder_dir):
    cfg, tok = _setup(tiny_encoder_dir, "data.cond_layout=eos")
    it = SequenceBuilder(tok, cfg.data).pair(*PAIRS[0])
    # the condition's 2 tokens + eos, the target cut to fit with its closing eos
    assert it["input_ids"].tolist() == [3, 12, 2, 4, 6, 8, 9, 2]
    assert it["cond_mask"].tolist() == [T, T, T, F, F, F, F, F]


def test_sampling_prompts_use_the_run_layout(tiny_encoder_dir):
    from elfctl.data.encoders import build_encoder
    from elfctl.sampling.conditioning import prompt_condition

    for layout, n_cond in (("authors", [3, 2]), ("eos", [3, 3])):
        cfg, tok = _setup(tiny_encoder_dir, f"data.cond_layout={layout}")
        enc = build_encoder(cfg.encoder, tok)
        cond = prompt_condition(["the big red cat", "the cat"], tok, enc, cfg.data, torch.device("cpu"),
                                truncate=True, warn=lambda m: None)
        assert cond.mask.sum(1).tolist() == n_cond, layout


def test_pretokenized_sets_only_take_the_authors_layout(tiny_encoder_dir):
    with pytest.raises(ConfigError, match="data.cond_layout=authors"):
        _setup(tiny_encoder_dir, "data.cond_layout=eos", "data.pretokenized=/some/folder")


def test_a_latent_cache_of_the_other_layout_is_refused(tiny_encoder_dir):
    from elfctl.data.cache import check_manifest, expected_manifest

    eos_cfg, _ = _setup(tiny_encoder_dir, "data.cond_layout=eos")
    cfg, _ = _setup(tiny_encoder_dir)
    old = expected_manifest(eos_cfg, "train", "float16")
    check_manifest(old, eos_cfg)
    with pytest.raises(ConfigError) as e:
        check_manifest(old, cfg)
    msg = str(e.value)
    assert "\n" not in msg and "cond_layout is 'eos' in the cache but 'authors'" in msg and "elfctl encode" in msg
    legacy = {k: v for k, v in old.items() if k != "cond_layout"}  # written before the key existed: eos
    check_manifest(legacy, eos_cfg)
    with pytest.raises(ConfigError, match="cond_layout"):
        check_manifest(legacy, cfg)


def test_a_run_trained_with_the_other_layout_keeps_it_and_refuses_to_resume(tiny_encoder_dir, tmp_path):
    import yaml

    from elfctl.rundir.directory import check_same_config

    cfg, _ = _setup(tiny_encoder_dir)
    old = cfg.to_dict()
    del old["data"]["cond_layout"]  # a conditional run saved before the key existed was trained with eos
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000001").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_resolved(run / "config.yaml").data.cond_layout == "eos"  # sampling reads it from the run
    with pytest.raises(ConfigError) as e:
        check_same_config(run, cfg, run / "checkpoints" / "step_00000001")
    assert "data.cond_layout: run has 'eos', now 'authors'" in str(e.value) and "--new" in str(e.value)
    (run / "provenance.json").write_text("{}")  # an imported authors' model: their layout
    assert load_resolved(run / "config.yaml").data.cond_layout == "authors"


def test_output_length_follows_the_authors_rule_or_max_new_tokens(tiny_encoder_dir):
    from elfctl.sampling.run import output_length

    cfg, _ = _setup(tiny_encoder_dir)
    assert output_length(cfg.data, cfg.sample) == 8 - 3
    cfg, _ = _setup(tiny_encoder_dir, "sample.max_new_tokens=2")
    assert output_length(cfg.data, cfg.sample) == 2
    for recipe in ("xsum", "wmt14-de-en"):  # 1088 − 1024 and 128 − 64: the authors' 64 tokens
        cfg = load_config(recipe)
        assert output_length(cfg.data, cfg.sample) == 64


@pytest.mark.parametrize("recipe", ["xsum", "wmt14-de-en"])
def test_translation_and_summary_recipes_warm_up_5000_steps(recipe):
    cfg = load_config(recipe)
    assert (cfg.optim.warmup_steps, cfg.optim.warmup_epochs) == (5000, None)
    assert cfg.data.cond_layout == "authors" and cfg.sample.max_new_tokens is None


def test_openwebtext_reads_the_authors_rows_one_by_one():
    cfg = load_config("owt")
    assert cfg.data.pretokenized and not cfg.data.packing


def test_distill_rounds_are_students_and_explicit_settings_win(tmp_path):
    from elfctl.config import PD_SAMPLERS
    from elfctl.sampling.student import is_student, step_settings

    assert not is_student(tmp_path)
    (tmp_path / "distill_round.json").write_text("{}")
    assert is_student(tmp_path)
    assert step_settings(PD_SAMPLERS, 32) == {"sampler": "sde", "gamma": 2.0, "sc_cfg": 2.0}
    assert step_settings(PD_SAMPLERS, 4) == {"sampler": "sde", "gamma": 1.5, "sc_cfg": 2.5}
    assert step_settings(PD_SAMPLERS, 3) == {}  # no row: the run's own settings stay
    assert step_settings(PD_SAMPLERS, 16, given={"sampler": "ode"}) == {"sc_cfg": 2.0}  # sampler and gamma: one
    assert step_settings(PD_SAMPLERS, 16, given={"cfg": 1.0}) == {"sampler": "sde", "gamma": 2.0}  # cfg = its SC-CFG

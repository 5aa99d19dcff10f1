"""train.loggers: jsonl always, tensorboard when installed, a missing optional package is one line (exit 2)."""

import importlib.util
import json
from pathlib import Path

import pytest

from elfctl.cli import main
from elfctl.errors import ConfigError
from elfctl.train.loggers import parse_loggers


def test_parse_loggers_keeps_jsonl_first_and_rejects_unknown_names():
    assert parse_loggers("tensorboard") == ["jsonl", "tensorboard"]
    assert parse_loggers(" wandb, jsonl ,wandb") == ["jsonl", "wandb"]
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'"):
        parse_loggers("jsonl,mlflow")


def test_a_missing_optional_logger_package_is_one_line_before_any_work(tiny_recipe, monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code = main(["train", tiny_recipe(), "train.loggers=jsonl,wandb"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "train.loggers: 'wandb' needs the wandb package" in err and "elfctl[wandb]" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_tensorboard_logs_the_same_numbers_as_metrics_jsonl(tiny_recipe, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["train", tiny_recipe(), "train.loggers=tensorboard"]) == 0
    run = Path(tmp_path / "run")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert sorted(got) == [r["step"] for r in rows] == [1, 2, 3]
    assert all(got[r["step"]] == pytest.approx(r["loss"], rel=1e-6) for r in rows)


def test_read_metrics_stops_at_a_torn_last_line_and_skips_blank_ones(tmp_path):
    from elfctl.train.loggers import read_metrics

    assert read_metrics(tmp_path) == []  # no file yet
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 2.25}\n{"step": 3, "lo',
                                            encoding="utf-8")
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}]

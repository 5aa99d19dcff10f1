"""Reading users' files and hub datasets: formats, splits, and one-line errors (exit code 2) for bad input."""

import json
import re

import pytest

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.data.dataset import reference_texts
from elfctl.data.text_sources import load_records, read_jsonl
from elfctl.errors import ConfigError




@pytest.fixture
def recipe_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\n")
    return p


BAD = [
    (b'{"text": "a cat"}\n{"text": \n', r"bad.jsonl:2: malformed JSON"),
    (b'{"text": "a cat"}\n\n{"body": "b", "id": 3}\n', r"bad.jsonl:3: missing field 'text' \(fields present: body, id\)"),
    (b'{"text": "a cat"}\n{"text": 5}\n', r"bad.jsonl:2: field 'text' must be a string, got int"),
    (b'{"text": "a"}\n{"text": "caf\xe9"}\n', r"bad.jsonl: not UTF-8 \(byte offset 27, line 2\)"),
    (b"", r"bad.jsonl: no examples"),
    (b"\n  \n", r"bad.jsonl: no examples"),
    (b'["text"]\n', r"bad.jsonl:1: expected a JSON object"),
]


@pytest.mark.parametrize("content,message", BAD)
def test_bad_jsonl_is_one_line_exit_2(tmp_path, capsys, tiny_encoder_dir, recipe_file, content, message):
    import re

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code = main(["encode", str(recipe_file), f"encoder.source={tiny_encoder_dir}", f"data.dataset={bad}",
                 "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_missing_dataset_file_and_unknown_builtin(tmp_path, capsys, tiny_encoder_dir, recipe_file):
    for ds, msg in ((tmp_path / "nope.jsonl", "not found"), ("builtin:nope", "unknown built-in")):
        code = main(["encode", str(recipe_file), f"encoder.source={tiny_encoder_dir}", f"data.dataset={ds}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and msg in err and len(err.splitlines()) == 1


def test_conditional_fields_are_configurable(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps({"doc": f"d {i}", "sum": f"s {i}"}) + "\n" for i in range(10)))
    cfg = load_config(None, [f"data.dataset={p}", "data.task=conditional", "data.input_field=doc",
                             "data.output_field=sum", "data.val_fraction=0.2"])
    train, val = load_records(cfg.data, "train"), load_records(cfg.data, "validation")
    assert len(train) == 8 and len(val) == 2
    assert {r["input"] for r in train + val} == {f"d {i}" for i in range(10)}
    assert set(train[0]) == {"input", "output"}
    with pytest.raises(ConfigError, match="missing field 'input'"):
        load_records(load_config(None, [f"data.dataset={p}", "data.task=conditional"]).data, "train")
    # the split is fixed by the seed
    assert load_records(cfg.data, "validation") == val


def test_jsonl_lines_may_hold_unicode_line_separators(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_text(json.dumps({"text": "one\u2028two"}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    assert read_jsonl(p, ("text",)) == [{"text": "one\u2028two"}]


def test_plain_text_line_mode_and_paragraph_mode(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("alpha beta\n\ngamma\n".replace("\n\n", "\n") + "delta\n")
    cfg = load_config(None, [f"data.dataset={lines}", "data.val_fraction=0.0"])
    assert [r["text"] for r in load_records(cfg.data, "train") + load_records(cfg.data, "validation")] != []
    got = sorted(r["text"] for r in load_records(cfg.data, "train") + load_records(cfg.data, "validation"))
    assert got == ["alpha beta", "delta", "gamma"]
    paras = tmp_path / "paras.txt"
    paras.write_text("one\ntwo\n\n\nthree\n")
    cfg = load_config(None, [f"data.dataset={paras}", "data.val_fraction=0.5"])
    got = sorted(r["text"] for r in load_records(cfg.data, "train") + load_records(cfg.data, "validation"))
    assert got == ["one two", "three"]


def test_directory_with_split_files_aliases_and_held_out_validation(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(json.dumps({"text": f"t {i}"}) + "\n" for i in range(20)))
    cfg = load_config(None, [f"data.dataset={d}", "data.val_fraction=0.1"])
    val = load_records(cfg.data, "validation")  # no validation file: held out of train
    assert len(val) == 2
    (d / "dev.txt").write_text("v one\nv two\nv three\n")
    assert [r["text"] for r in load_records(cfg.data, "validation")] == ["v one", "v two", "v three"]
    assert len(load_records(cfg.data, "train")) == 20
    assert [r["text"] for r in reference_texts(cfg, n=2)] == ["v one", "v two"]
    with pytest.raises(ConfigError, match="has no test.jsonl"):
        load_records(cfg.data, "test")


def test_unknown_split_of_a_single_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("x y\nz w\n")
    with pytest.raises(ConfigError, match="split 'test'"):
        load_records(load_config(None, [f"data.dataset={p}"]).data, "test")


def test_hub_dataset_offline_fails_fast_in_one_line(monkeypatch, tmp_path, capsys, tiny_encoder_dir, recipe_file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import socket

    attempts = []  # offline means no connection attempt at all (instead of a wall-clock bound)

    def no_network(*a, **k):
        attempts.append(a)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    code = main(["encode", str(recipe_file), f"encoder.source={tiny_encoder_dir}",
                 "data.dataset=no-such-org/no-such-data"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "hub dataset 'no-such-org/no-such-data'" in err and "data.dataset" in err
    assert attempts == []


@pytest.mark.parametrize("source", ["data/my.csv", "my.CSV", "corpus/train/part1", "data/my.JSONL"])
def test_a_missing_local_file_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, source):
    # issue 19 item 15: `data/my.csv` used to go to the hub (ConnectionError); now one line naming the key and file
    from elfctl.config import DataConfig
    from elfctl.data.text_sources import load_records

    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    import elfctl.data.text_sources as ts

    monkeypatch.setattr(ts, "_load_hub", lambda *a, **k: pytest.fail("treated as a hub id"))
    with pytest.raises(ConfigError, match=r"^data.dataset: file or directory not found: " + re.escape(source)):
        load_records(DataConfig(dataset=source), "train")


def test_a_csv_file_is_refused_not_read_as_text_lines(tmp_path):
    from elfctl.config import DataConfig
    from elfctl.data.text_sources import load_records

    p = tmp_path / "my.csv"
    p.write_text("text,label\nthe cat,1\n")
    with pytest.raises(ConfigError, match=r"\.csv files are not read; export it to JSONL .*'text'"):
        load_records(DataConfig(dataset=str(p)), "train")

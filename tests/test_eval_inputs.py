"""Sample file formats, bad inputs as one-line exit-2 errors, newest samples, and `elfctl eval` end to end."""

import json
import math
import os
import time

import pytest

from elfctl.cli import main
from elfctl.eval.inputs import newest_samples, read_samples



def write_jsonl(path, texts, refs=None, run_dir="nowhere", **header):
    head = {"type": "header", "checkpoint": "c", "step": 1, "run_dir": str(run_dir), "recipe": "r",
            "task": "unconditional", "sampler": {"steps": 8}, "seed": 0, "nfe": 4, "wall_time_s": 0.1, **header}
    lines = [json.dumps(head)]
    for i, t in enumerate(texts):
        rec = {"type": "sample", "index": i, "text": t, "token_ids": []}
        if refs:
            rec["reference"] = refs[i]
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_formats(tmp_path):
    s = read_samples(write_jsonl(tmp_path / "s.jsonl", ["a cat", "a dog"], refs=["x", "y"]))
    assert s.texts == ["a cat", "a dog"] and s.references == ["x", "y"] and s.header["step"] == 1
    (tmp_path / "l.json").write_text(json.dumps(["one", "two"]))
    assert read_samples(tmp_path / "l.json").texts == ["one", "two"]
    (tmp_path / "lines.txt").write_text("first sample\nsecond sample\n")
    assert read_samples(tmp_path / "lines.txt").texts == ["first sample", "second sample"]
    (tmp_path / "paras.txt").write_text("first line\nstill first\n  \nsecond\n\n\nthird\n")
    assert read_samples(tmp_path / "paras.txt").texts == ["first line still first", "second", "third"]


@pytest.mark.parametrize("name, content, message", [
    ("s.txt", b"", "empty file"),
    ("s.txt", b"\n \n", "empty file"),
    ("s.txt", b"caf\xe9\n", "not UTF-8"),
    ("s.jsonl", b'{"text": ""}\n{"text": " "}\n', "all 2 samples are empty"),
    ("s.jsonl", b'{"text": "a"}\n{oops\n', "malformed JSON"),
    ("s.json", b'{"a": 1}', "list of strings"),
    # files a user has at hand that are not samples: a run's config, its weights, a file of raw bytes
    ("config.yaml", b"name: quickstart\nmodel:\n  preset: elf-tiny\n", "is a YAML config, not samples"),
    ("ema.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", "is a weights file, not samples"),
    ("latents", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", "is a binary file"),
])
def test_bad_sample_files_are_one_line_exit_2(tmp_path, capsys, name, content, message):
    p = tmp_path / name
    p.write_bytes(content)
    assert main(["eval", "--metric", "diversity", "--samples", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(p) in err[0]


def test_unknown_metric_and_count_mismatch(tmp_path, capsys):
    q = tmp_path / "h.json"
    q.write_text(json.dumps(["a cat", "a dog"]))
    assert main(["eval", "--metric", "perplexity", "--samples", str(q)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "choose from genppl, entropy, bleu, rouge, diversity, nelbo, all" in err[0]
    r = tmp_path / "r.txt"
    r.write_text("one ref\n")
    assert main(["eval", "--metric", "bleu", "--samples", str(q), "--references", str(r)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 references" in err[0] and "2 hypotheses" in err[0] and str(r) in err[0]
    assert main(["eval", "--metric", "rouge", "--samples", str(q)]) == 2
    assert "no 'reference' fields" in capsys.readouterr().err
    assert main(["eval", "--metric", "diversity", "--runs-dir", str(tmp_path / "none")]) == 2
    assert "no samples found" in capsys.readouterr().err


def test_newest_samples_is_the_newest_file_of_the_newest_run(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for run in (old, new):
        (run / "samples").mkdir(parents=True)
        (run / "config.yaml").write_text("{}")
    t = time.time()
    os.utime(old / "config.yaml", (t - 100, t - 100))
    a = write_jsonl(new / "samples" / "a.jsonl", ["x"])
    b = write_jsonl(new / "samples" / "b.jsonl", ["x"])
    os.utime(a, (t - 50, t - 50))
    write_jsonl(old / "samples" / "later.jsonl", ["x"])   # newer file, but of the older run
    assert newest_samples(tmp_path) == b


def test_bleu_rouge_diversity_from_the_cli(tmp_path, capsys):
    s = write_jsonl(tmp_path / "s.jsonl", ["the cat sat", "a dog ran"], refs=["the cat sat", "a dog ran"])
    out = tmp_path / "res.json"
    assert main(["eval", "--metric", "bleu,rouge,diversity", "--samples", str(s), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["bleu"] == pytest.approx(100.0) and res["rouge"]["rougeL"] == pytest.approx(100.0)
    assert res["diversity"]["empty_samples"] == 0
    printed = capsys.readouterr().out
    assert "BLEU: 100.000" in printed
    # no judge was involved: no Gen PPL protocol line, no judge label, no Gen PPL row
    assert "protocol" not in res and "judge_label" not in res and res["rows"] == {}
    assert "protocol elf" not in printed and "judge" not in printed and "Gen PPL" not in printed


def test_genppl_from_the_cli_single_file_and_seeds(tmp_path, judge_dir, capsys):
    run = tmp_path / "run"
    a = write_jsonl(tmp_path / "a.jsonl", ["the cat sat on the mat", "a dog ran", "big red house"], run_dir=run)
    b = write_jsonl(tmp_path / "b.jsonl", ["the dog sat", "a cat ran in the park", "blue tree"], run_dir=run,
                    seed=1)
    assert main(["eval", "--samples", str(a), "--judge", str(judge_dir), "--bootstrap", "50"]) == 0
    (written,) = (run / "eval").glob("a-*.genppl.json")   # default: <run_dir>/eval/<stem>-<hash>.<metric>.json
    res = json.loads(written.read_text())
    row = res["rows"]["model"]
    assert row["genppl"] > 1 and row["entropy"] > 0 and len(row["per_sample"]["nll_sum"]) == 3
    assert row["genppl_ci95"][0] <= row["genppl"] <= row["genppl_ci95"][1]
    assert res["protocol"]["name"] == "elf" and "offline judge" in res["judge_label"]
    printed = capsys.readouterr().out
    assert res["protocol_hash"] in printed and "comparable only with runs scored by the same judge" in printed
    assert "entropy" in printed
    out = tmp_path / "seeds.json"
    assert main(["eval", "--samples", str(a), "--samples", str(b), "--judge", str(judge_dir), "--protocol", "mdlm",
                 "--reference-text", str(b), "--out", str(out), "--batch-size", "2"]) == 0
    res = json.loads(out.read_text())
    row = res["rows"]["model"]
    assert row["seeds"] == 2 and row["genppl_std_over_seeds"] > 0 and len(row["per_seed"]) == 2
    assert res["protocol"]["name"] == "mdlm" and "data" in res["rows"]
    # the pool of both seeds' six samples: one token-weighted Gen PPL, by hand, and intervals around it
    nll = [x for r in row["per_seed"] for x in r["per_sample"]["nll_sum"]]
    n = [c for r in row["per_seed"] for c in r["per_sample"]["n_scored"]]
    assert row["genppl_pooled"] == pytest.approx(math.exp(sum(nll) / sum(n)))
    lo, hi = row["genppl_pooled_ci95"]
    assert lo <= row["genppl_pooled"] <= hi and lo < hi
    ent = [e for r in row["per_seed"] for e in r["per_sample"]["entropy"]]
    assert row["entropy_pooled_ci95"][0] <= sum(ent) / len(ent) <= row["entropy_pooled_ci95"][1]
    printed = capsys.readouterr().out
    assert "2 seeds, mean ± std" in printed and "Gen PPL 95% CI (pooled)" in printed

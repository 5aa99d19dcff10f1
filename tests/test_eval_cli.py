"""`elfctl eval` as a new user meets it: formats read by content, seeds checked, result paths that never collide,
only the asked metrics loaded and printed, flags named in errors (issue 19 items 3, 4, 10, 11, 13)."""

import json

import pytest
import torch

from elfctl.cli import main
from elfctl.errors import ConfigError
from elfctl.eval.inputs import read_samples

from conftest import make_tokenizer_dir

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "big red house"]


def header(**over):
    return {"type": "header", "checkpoint": "runs/r/checkpoints/step_3", "step": 3, "run_dir": "nowhere",
            "recipe": "r", "task": "unconditional", "sampler": {"steps": 8, "sampler": "ode"}, "seed": 0,
            "nfe": 9, "wall_time_s": 0.1, **over}


def write_samples(path, texts=TEXTS, refs=None, **over):
    rows = [header(**over)] + [{"type": "sample", "index": i, "text": t, "token_ids": [],
                                **({"reference": refs[i]} if refs else {})} for i, t in enumerate(texts)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- item 3: formats by content

def test_a_txt_file_holding_sample_jsonl_is_read_as_jsonl_not_as_text(tmp_path, capsys):
    # `elfctl sample --out s/x.txt` wrote JSONL into a .txt; its JSON lines (header included) must not be scored
    p = write_samples(tmp_path / "s" / "x.txt")
    s = read_samples(p)
    assert s.format == "jsonl" and s.texts == TEXTS and s.header["step"] == 3
    out = tmp_path / "r.json"
    assert main(["eval", "--metric", "diversity", "--samples", str(p), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["input_formats"] == ["jsonl"]
    assert res["diversity"]["mean_length_words"] == pytest.approx((6 + 6 + 3) / 3)


def test_extensions_are_case_insensitive(tmp_path):
    (tmp_path / "l.JSON").write_text(json.dumps(["one two", "three"]))
    s = read_samples(tmp_path / "l.JSON")
    assert s.format == "json" and s.texts == ["one two", "three"]
    s = read_samples(write_samples(tmp_path / "x.JSONL"))
    assert s.format == "jsonl" and s.texts == TEXTS


@pytest.mark.parametrize("name, content, message", [
    ("x.txt", json.dumps(header()) + "\nplain text line\n", "read as JSONL"),   # starts as JSONL, then text
    ("x.jsonl", "just some text\nmore text\n", "malformed JSON"),               # .jsonl that is not JSON
    ("x.JSON", "just some text\n", "malformed JSON"),                           # .JSON that is not JSON
    ("x.json", '{"a": 1}', "list of strings"),
])
def test_content_that_contradicts_the_file_is_refused_in_one_line(tmp_path, capsys, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    assert main(["eval", "--metric", "diversity", "--samples", str(p)]) == 2
    line = one_error_line(capsys)
    assert message in line and str(p) in line


def test_plain_text_that_merely_starts_with_a_bracket_stays_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("[citation needed] the cat\n{not json} a dog\n")
    s = read_samples(p)
    assert s.format == "text" and s.texts == ["[citation needed] the cat", "{not json} a dog"]


# --------------------------------------------------------------------------- item 4: seeds and result paths

def test_files_from_different_runs_or_settings_are_not_averaged_as_seeds(tmp_path, capsys):
    a = write_samples(tmp_path / "a.jsonl", seed=0)
    b = write_samples(tmp_path / "b.jsonl", seed=1, sampler={"steps": 64, "sampler": "ode"})
    assert main(["eval", "--metric", "diversity", "--samples", str(a), "--samples", str(b)]) == 2
    line = one_error_line(capsys)
    assert "not seeds of one run and settings" in line and "sampler" in line and "--allow-mixed" in line
    c = write_samples(tmp_path / "c.jsonl", seed=1, run_dir="elsewhere")
    assert main(["eval", "--metric", "diversity", "--samples", str(a), "--samples", str(c)]) == 2
    assert "run_dir" in one_error_line(capsys)
    out = tmp_path / "mixed.json"
    assert main(["eval", "--metric", "diversity", "--samples", str(a), "--samples", str(b), "--allow-mixed",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert len(res["diversity_per_seed"]) == 2 and any("--allow-mixed" in n for n in res["notes"])


def test_conditional_files_on_different_inputs_are_not_seeds(tmp_path, capsys):
    def cond(path, inputs, seed):
        rows = [header(task="conditional", seed=seed)] + [
            {"type": "sample", "index": i, "text": "a cat", "input": x, "token_ids": []} for i, x in enumerate(inputs)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    a = cond(tmp_path / "a.jsonl", ["doc one", "doc two"], 0)
    b = cond(tmp_path / "b.jsonl", ["doc one", "doc three"], 1)
    c = cond(tmp_path / "c.jsonl", ["doc one", "doc two"], 1)
    assert main(["eval", "--metric", "diversity", "--samples", a, b]) == 2
    assert "condition on different inputs" in one_error_line(capsys)
    assert main(["eval", "--metric", "diversity", "--samples", a, c, "--out", str(tmp_path / "r.json")]) == 0


def test_the_same_seed_twice_and_headerless_files_are_refused(tmp_path, capsys):
    a = write_samples(tmp_path / "a.jsonl", seed=0)
    a2 = write_samples(tmp_path / "a2.jsonl", seed=0)
    assert main(["eval", "--metric", "diversity", "--samples", str(a), "--samples", str(a2)]) == 2
    assert "same seed 0" in one_error_line(capsys)
    t = tmp_path / "t.txt"
    t.write_text("one\ntwo\n")
    assert main(["eval", "--metric", "diversity", "--samples", str(a), "--samples", str(t)]) == 2
    line = one_error_line(capsys)
    assert "no elfctl header" in line and str(t) in line


def test_seeds_of_one_run_average_and_several_files_follow_one_samples_flag(tmp_path):
    a = write_samples(tmp_path / "a.jsonl", seed=0)
    b = write_samples(tmp_path / "b.jsonl", ["a cat", "the dog", "red"], seed=1, wall_time_s=9.0, device="cuda")
    out = tmp_path / "seeds.json"
    assert main(["eval", "--metric", "diversity", "--samples", str(a), str(b), "--out", str(out)]) == 0  # a b
    res = json.loads(out.read_text())
    assert res["inputs"] == [str(a), str(b)] and len(res["diversity_per_seed"]) == 2
    assert res["diversity"]["mean_length_words"] == pytest.approx((5 + 5 / 3) / 2)


def test_default_result_paths_of_same_named_files_do_not_collide(tmp_path):
    run = tmp_path / "run"
    a = write_samples(tmp_path / "a" / "x.jsonl", run_dir=str(run))
    b = write_samples(tmp_path / "b" / "x.jsonl", ["one", "two"], run_dir=str(run))
    assert main(["eval", "--metric", "diversity", "--samples", str(a)]) == 0
    assert main(["eval", "--metric", "diversity", "--samples", str(b)]) == 0
    written = sorted((run / "eval").glob("x-*.diversity.json"))
    assert len(written) == 2
    assert sorted(json.loads(p.read_text())["inputs"][0] for p in written) == [str(a), str(b)]
    own = write_samples(run / "samples" / "s.jsonl", run_dir=str(run))   # a run's own samples keep the plain name
    assert main(["eval", "--metric", "diversity", "--samples", str(own)]) == 0
    assert (run / "eval" / "s.diversity.json").is_file()


# --------------------------------------------------------------------------- items 10, 11: only what was asked

def judged_eval(metric, samples, judge, out):
    """`elfctl eval --metric METRIC` of one samples file under a given judge, no bootstrap; must exit 0."""
    assert main(["eval", "--metric", metric, "--samples", str(samples), "--judge", str(judge), "--bootstrap", "0",
                 "--out", str(out)]) == 0


def test_metric_all_on_an_unconditional_run_skips_bleu_rouge_with_a_note(tmp_path, judge_dir, capsys):
    s = write_samples(tmp_path / "s.jsonl")
    out = tmp_path / "all.json"
    judged_eval("all", s, judge_dir, out)
    res = json.loads(out.read_text())
    assert "bleu" not in res and "rouge" not in res
    assert res["rows"]["model"]["genppl"] > 1 and "diversity" in res
    err = capsys.readouterr().err
    assert "note: BLEU and ROUGE skipped" in err and "no references" in err
    # asked for by name, a metric that cannot be computed is still an error
    assert main(["eval", "--metric", "bleu", "--samples", str(s)]) == 2
    assert "no 'reference' fields" in one_error_line(capsys)
    # with references, `all` scores them
    r = write_samples(tmp_path / "r.jsonl", refs=TEXTS)
    judged_eval("all", r, judge_dir, out)
    assert json.loads(out.read_text())["bleu"] == pytest.approx(100.0)


def test_metric_entropy_needs_the_judge_tokenizer_only_and_prints_no_gen_ppl(tmp_path, judge_dir, capsys):
    s = write_samples(tmp_path / "s.jsonl")
    full = tmp_path / "full.json"
    judged_eval("genppl", s, judge_dir, full)
    want = json.loads(full.read_text())
    capsys.readouterr()
    tok_only = tmp_path / "tokenizer_only"      # no config, no weights: loading the model would fail
    make_tokenizer_dir(tok_only)
    out = tmp_path / "ent.json"
    judged_eval("entropy", s, tok_only, out)
    res = json.loads(out.read_text())
    row = res["rows"]["model"]
    assert "genppl" not in row and row["entropy"] == pytest.approx(want["rows"]["model"]["entropy"], abs=1e-12)
    assert row["judge_tokens"] == want["rows"]["model"]["judge_tokens"] == 15
    printed = capsys.readouterr().out
    assert "entropy (nats)" in printed and "Gen PPL" not in printed and res["protocol_line"] in printed


# --------------------------------------------------------------------------- item 13: flags named in errors

@pytest.mark.parametrize("flag", ["--references", "--reference-text"])
def test_a_missing_reference_file_names_its_flag(tmp_path, capsys, flag):
    s = write_samples(tmp_path / "s.jsonl", refs=TEXTS)
    missing = tmp_path / "nope.txt"
    assert main(["eval", "--metric", "bleu", "--samples", str(s), flag, str(missing)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {flag}: file not found") and str(missing) in line and "samples" not in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_subcommand(tmp_path, capsys, where):
    missing = str(tmp_path / "nope.jsonl")
    args = ["eval", "--samples", missing]
    assert main(args) == 2 and "file not found" in one_error_line(capsys)
    with pytest.raises(ConfigError, match="file not found"):   # --debug: the exception itself, with traceback
        main(["--debug", *args] if where == "before" else [*args, "--debug"])


def test_real_seed_files_of_elfctl_sample_pass_the_seed_check(tmp_path, tiny_recipe):
    from elfctl.config import load_config
    from elfctl.sampling.run import SampleRequest, run_sampling
    from elfctl.train.trainer import Trainer

    cfg = load_config(tiny_recipe())
    Trainer(cfg, log=lambda s: None).run()
    outs = [p for p, _ in run_sampling(SampleRequest(ref=cfg.resolved_run_dir(), seeds=[0, 1],
                                                     out=tmp_path / "s.jsonl"), log=lambda s: None)]
    assert len(outs) == 2
    res_path = tmp_path / "seeds.json"
    assert main(["eval", "--metric", "diversity", "--samples", *map(str, outs), "--out", str(res_path)]) == 0
    assert len(json.loads(res_path.read_text())["diversity_per_seed"]) == 2
    other = next(run_sampling(SampleRequest(ref=cfg.resolved_run_dir(), settings={"steps": 2, "seed": 2},
                                            out=tmp_path / "t.jsonl"), log=lambda s: None))[0]
    assert main(["eval", "--metric", "diversity", "--samples", str(outs[0]), str(other)]) == 2


def test_max_samples_cuts_given_references_like_the_samples(tmp_path):
    s = write_samples(tmp_path / "s.jsonl")
    refs = tmp_path / "refs.txt"
    refs.write_text("the cat sat on the mat\na dog ran in the park\nbig red house\n")
    out = tmp_path / "r.json"
    assert main(["eval", "--metric", "bleu", "--samples", str(s), "--references", str(refs), "--max-samples", "2",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["bleu"] == pytest.approx(100.0)


def test_device_flag_is_checked_before_anything_loads(tmp_path, capsys):
    s = write_samples(tmp_path / "s.jsonl")
    assert main(["eval", "--samples", str(s), "--device", "gpu"]) == 2
    assert one_error_line(capsys).startswith("error: --device: 'gpu' is not valid")
    if not torch.cuda.is_available():
        assert main(["eval", "--samples", str(s), "--device", "cuda"]) == 2
        assert "--device: 'cuda' asked for, but no CUDA device is available" in one_error_line(capsys)


def test_device_flag_reaches_the_judge(tmp_path, judge_dir, monkeypatch):
    import elfctl.eval.judge as judge_mod

    seen, real = [], judge_mod.load_judge
    monkeypatch.setattr(judge_mod, "load_judge", lambda src, **kw: seen.append(kw.get("device")) or real(src, **kw))
    s = write_samples(tmp_path / "s.jsonl")
    out = tmp_path / "r.json"
    assert main(["eval", "--samples", str(s), "--judge", str(judge_dir), "--device", "cpu", "--bootstrap", "0",
                 "--out", str(out)]) == 0
    assert seen == ["cpu"] and json.loads(out.read_text())["rows"]["model"]["genppl"] > 1
    assert main(["eval", "--samples", str(s), "--judge", str(judge_dir), "--bootstrap", "0", "--out", str(out)]) == 0
    assert seen == ["cpu", None]    # no flag: load_judge's own default (auto)


def test_intervals_and_spreads_print_in_one_plain_format():
    """'[60.342, 2.762e+04]' was printed: both ends now share one plain decimal format."""
    from elfctl.commands.eval import _ci, _fmt, _pm

    assert _ci([60.342, 27620.41]) == "[60.3, 27620.4]"
    assert _ci([60.3421, 75.0]) == "[60.342, 75.000]"
    assert _fmt(123456.789) == "123456.8" and "e+" not in _fmt(1.5e7)
    assert _pm({"genppl": 27620.41, "genppl_std_over_seeds": 12.345}, "genppl") == "27620.4 ± 12.3"


def test_eval_flags_come_from_the_eval_section_of_the_schema():
    import inspect

    from elfctl.commands import eval as eval_cmd
    from elfctl.config import EvalConfig, field_help, load_config

    params = inspect.signature(eval_cmd.evaluate).parameters
    for flag, key in eval_cmd.EVAL_FLAGS.items():
        option = next(p.default for p in params.values()
                      if flag in (getattr(p.default, "param_decls", None) or ()))
        assert field_help("eval", key) in option.help, flag
    # no run: the schema's defaults, with the flags given put over them and checked by the key's own rules
    assert eval_cmd.eval_settings(None, {"bootstrap": None}) == EvalConfig()
    assert eval_cmd.eval_settings(None, {"bootstrap": 7}).bootstrap == 7
    run_cfg = load_config(None, ["eval.protocol=mdlm", "eval.judge_batch_size=3"])
    got = eval_cmd.eval_settings(run_cfg, {"judge_batch_size": None, "judge_dtype": "bfloat16"})
    assert (got.protocol, got.judge_batch_size, got.judge_dtype) == ("mdlm", 3, "bfloat16")
    with pytest.raises(ConfigError, match="--protocol"):
        eval_cmd.eval_settings(None, {"protocol": "gpt"})

"""`elfctl sample` end to end on a checkpoint written in the test (no training): files, header, errors."""

import json
from pathlib import Path

import pytest
import torch

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.model import build_model
from elfctl.rundir.checkpoint import save_checkpoint


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.fixture
def make_run(tmp_path, tiny_encoder_dir, tiny_corpus):
    """Write a run with one checkpoint of a tiny random ELF (random but non-degenerate weights)."""

    def make(name="run", conditional=False, extra=(), depth=1):
        from elfctl.data.encoders import build_encoder
        from elfctl.data.tokenize import load_tokenizer

        data = ([f"data.dataset={tiny_corpus / 'pairs.jsonl'}", "data.task=conditional", "data.max_length=16",
                 "data.max_input_length=6", "data.pad_token=eos"] if conditional else
                [f"data.dataset={tiny_corpus / 'text.jsonl'}", "data.max_length=12"])
        run_dir = tmp_path / name
        cfg = load_config(None, [f"encoder.source={tiny_encoder_dir}", "encoder.latent_std=1.0", *data,
                                 f"model.depth={depth}", "model.hidden_size=16", "model.num_heads=2",
                                 "sample.steps=3", "sample.num_samples=3", "sample.batch_size=2",
                                 f"train.run_dir={run_dir}", *extra])
        tok = load_tokenizer(cfg.encoder)
        enc = build_encoder(cfg.encoder, tok)
        torch.manual_seed(0)
        model = build_model(cfg.model, enc.latent_dim, enc.vocab_size)
        torch.nn.init.normal_(model.flow_head.weight, std=0.3)
        torch.nn.init.normal_(model.unembed.weight, std=1.0)
        state = model.state_dict()
        save_checkpoint(run_dir, 5, model_state=state, ema_state=state, train_state={}, config_yaml=cfg.to_yaml(),
                        meta={"latent_dim": enc.latent_dim, "vocab_size": enc.vocab_size})
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        return run_dir

    return make


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unconditional_file_header_and_reproducibility(make_run, tmp_path, capsys):
    run = make_run()
    out = tmp_path / "a.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out), "--seed", "4", "--trajectory", "0,2",
                 "--sampler", "sde", "--gamma", "1.0"]) == 0
    assert "3/3 samples" in capsys.readouterr().out  # plain progress lines when stdout is not a terminal
    rows = _lines(out)
    header, samples = rows[0], rows[1:]
    assert set(header) >= {"type", "checkpoint", "step", "run_dir", "recipe", "task", "sampler", "guidance", "seed",
                           "nfe", "wall_time_s", "ema", "device", "kernels_backend"}
    assert header["type"] == "header" and header["step"] == 5 and header["seed"] == 4 and header["ema"] is True
    assert header["sampler"] == {"steps": 3, "sampler": "sde", "gamma": 1.0, "time_grid": "logit_normal",
                                 "cfg": 1.0, "sc_cfg": 3.0}
    assert header["guidance"]["cfg_applies_to"] == "self-conditioning"
    assert header["nfe_breakdown"] == {"denoise": 3, "decode": 1, "trajectory": 2, "rows_per_denoise": 1}
    assert header["kernels_backend"] == "torch" and header["device"] == "cpu"
    assert [s["index"] for s in samples] == [0, 1, 2]
    assert all(isinstance(s["text"], str) and len(s["token_ids"]) == 12 for s in samples)
    assert all([t["step"] for t in s["trajectory"]] == [0, 2] for s in samples)
    again, other = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(again), "--seed", "4", "--trajectory", "0,2",
                 "--sampler", "sde", "--gamma", "1.0", "--num-samples", "5"]) == 0
    # same seed and settings -> identical text; batch b is seeded by (seed, b), so more batches change nothing
    same = _lines(again)[1:]
    assert [r["text"] for r in same[:3]] == [r["text"] for r in samples]
    assert len(same) == 5
    # a row's noise is its own: batch 0 of size 3 starts with the same two rows as batch 0 of size 2
    wide = tmp_path / "w.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(wide), "--seed", "4", "--sampler", "sde", "--gamma", "1.0",
                 "--batch-size", "3"]) == 0
    assert [r["token_ids"] for r in _lines(wide)[1:3]] == [r["token_ids"] for r in samples[:2]]
    assert main(["sample", "--run", str(run), "--out", str(other), "--seed", "5"]) == 0
    assert [r["token_ids"] for r in _lines(other)[1:]] != [r["token_ids"] for r in samples]


def test_default_output_path_and_one_file_per_seed(make_run, tmp_path):
    run = make_run()
    assert main(["sample", "--run", str(run), "--num-samples", "1", "--seeds", "0,1"]) == 0
    files = sorted((run / "samples").glob("*.jsonl"))
    assert [f.name.split("-")[:3] for f in files] == [["sde", "3", "s0"], ["sde", "3", "s1"]]
    out = tmp_path / "x.jsonl"
    assert main(["sample", "--run", str(run), "--num-samples", "1", "--seeds", "2,3", "--out", str(out)]) == 0
    assert [_lines(tmp_path / f"x-s{s}.jsonl")[0]["seed"] for s in (2, 3)] == [2, 3]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files


def test_cfg_on_an_unconditional_model_is_its_sc_cfg(make_run, tmp_path, capsys):
    run = make_run()
    out = tmp_path / "g.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out), "--cfg", "2.0", "--num-samples", "1"]) == 0
    g = _lines(out)[0]["guidance"]
    assert g["cfg"] == 1.0 and g["sc_cfg"] == 2.0 and g["cfg_applies_to"] == "self-conditioning"
    assert main(["sample", "--run", str(run), "--out", str(out), "--cfg", "2", "--sc-cfg", "2",
                 "--num-samples", "1"]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--cfg", "2.0", "--sc-cfg", "3.0"]) == 2
    assert "same guidance" in _err_line(capsys)


def test_user_errors_exit_2_with_one_line(make_run, tmp_path, capsys):
    run = str(make_run())
    for args, message in ((["--steps", "0"], "--steps: 0 is out of range"),
                          (["--cfg", "-1"], "--cfg: -1.0 is out of range"),
                          (["--gamma", "-1"], "--gamma: -1.0 is out of range"),
                          (["--sampler", "heun"], "--sampler: 'heun' is not valid"),
                          (["--time-grid", "cosine"], "--time-grid: 'cosine' is not valid"),
                          (["--trajectory", "0,7"], "--trajectory: step 7 is out of range"),
                          (["--prompt", "x"], "this model is unconditional")):
        capsys.readouterr()
        assert main(["sample", "--run", run, *args]) == 2, args
        assert message in _err_line(capsys)
    assert main(["sample", "--run", str(tmp_path / "missing")]) == 2
    line = _err_line(capsys)
    assert "looked at" in line and str(tmp_path / "missing") in line
    assert main(["sample", "--runs-dir", str(tmp_path / "nothing-here")]) == 2
    assert "no trained run found under" in _err_line(capsys)


def test_pickles_need_trust_and_other_architectures_are_refused(make_run, tmp_path, capsys):
    run = make_run()
    ckpt = next((run / "checkpoints").iterdir())
    from safetensors.torch import load_file

    pt = run / "weights.pt"
    torch.save(load_file(str(ckpt / "ema.safetensors")), pt)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(pt)]) == 2
    assert "--trust-pickle" in _err_line(capsys)
    out = tmp_path / "p.jsonl"
    assert main(["sample", "--checkpoint", str(pt), "--trust-pickle", "--out", str(out), "--num-samples", "1"]) == 0
    assert _lines(out)[0]["ema"] is None
    # weights of a 1-block network under a recipe of 2 blocks: one line naming the mismatch
    other = make_run("deeper", depth=2)
    deep = next((other / "checkpoints").iterdir())
    deep_ckpt = save_checkpoint(other, 6, model_state=load_file(str(deep / "model.safetensors")),
                                ema_state=load_file(str(ckpt / "ema.safetensors")), train_state={},
                                config_yaml=(other / "config.yaml").read_text(),
                                meta={k: v for k, v in json.loads((deep / "meta.json").read_text()).items()
                                      if k in ("latent_dim", "vocab_size")})
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(deep_ckpt)]) == 2
    assert "does not match this architecture" in _err_line(capsys)
    assert main(["sample", "--checkpoint", str(deep_ckpt), "--no-ema", "--num-samples", "1",
                 "--out", str(tmp_path / "raw.jsonl")]) == 0  # the raw weights are intact


def test_conditional_prompts_inputs_cfg_and_truncation(make_run, tmp_path, capsys):
    run = make_run(conditional=True)
    out = tmp_path / "c.jsonl"
    assert main(["sample", "--run", str(run), "--prompt", "the cat sat", "--cfg", "2.0", "--num-samples", "2",
                 "--out", str(out)]) == 0
    rows = _lines(out)
    assert rows[0]["guidance"]["cfg"] == 2.0 and rows[0]["guidance"]["cfg_applies_to"] == "condition"
    assert rows[0]["rows_per_batch"] == 2 * 2 * 3 + 2 and rows[0]["nfe_breakdown"]["rows_per_denoise"] == 2
    assert all(r["input"] == "the cat sat" and "reference" not in r for r in rows[1:])
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"input": "a dog ran", "output": "a dog"}) + "\n" + json.dumps({"input": "the"})
                      + "\n")
    assert main(["sample", "--run", str(run), "--input", str(inputs), "--out", str(out)]) == 0
    rows = _lines(out)[1:]
    assert [r["input"] for r in rows] == ["a dog ran", "the"]
    assert rows[0]["reference"] == "a dog" and "reference" not in rows[1]
    long = "the cat sat on the mat and the dog ran"  # 10 words; the condition holds max_input_length 6
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", long]) == 2
    assert "prompt 0: 10 tokens" in _err_line(capsys)
    assert main(["sample", "--run", str(run), "--prompt", long, "--truncate", "--num-samples", "1",
                 "--out", str(out)]) == 0
    assert "truncated from 10 to 6 tokens" in capsys.readouterr().out
    assert main(["sample", "--run", str(run), "--prefix", "the"]) == 2
    assert "this model is conditional" in _err_line(capsys)


def test_infilling_keeps_the_pinned_text(make_run, tmp_path):
    run = make_run()
    out = tmp_path / "i.jsonl"
    assert main(["sample", "--run", str(run), "--prefix", "the big", "--suffix", "on the mat", "--out", str(out),
                 "--sampler", "ode"]) == 0
    for s in _lines(out)[1:]:
        assert s["text"].startswith("the big") and s["text"].endswith("on the mat")
        assert s["prefix"] == "the big" and s["suffix"] == "on the mat"


# ---------------------------------------------------------------------------------------------- issues 17, 18, 19
def test_gamma_and_sampler_have_one_meaning(make_run, tmp_path, capsys):
    run = str(make_run(extra=("sample.sampler=ode", "sample.gamma=0.0")))  # an ODE recipe, like quickstart
    out = tmp_path / "g.jsonl"
    assert main(["sample", "--run", run, "--gamma", "1.5", "--num-samples", "1", "--out", str(out)]) == 0
    assert _lines(out)[0]["sampler"] | {} == {"steps": 3, "sampler": "sde", "gamma": 1.5, "time_grid": "logit_normal",
                                              "cfg": 1.0, "sc_cfg": 3.0}  # used to record sampler ode, γ 1.5
    explicit = tmp_path / "e.jsonl"
    assert main(["sample", "--run", run, "--sampler", "sde", "--gamma", "1.5", "--num-samples", "1",
                 "--out", str(explicit)]) == 0
    assert _lines(explicit)[1]["token_ids"] == _lines(out)[1]["token_ids"]
    capsys.readouterr()
    assert main(["sample", "--run", run, "--sampler", "sde"]) == 2  # used to run the ODE silently
    assert "--sampler sde: the recipe's sample.gamma is 0" in _err_line(capsys)
    assert main(["sample", "--run", run, "--sampler", "ode", "--gamma", "1"]) == 2
    assert "contradicts --gamma 1" in _err_line(capsys)
    assert not list(tmp_path.glob("**/samples/*"))


def test_non_finite_flags_exit_2_with_one_line(make_run, capsys):
    run = str(make_run())
    for args, message in ((["--cfg", "nan"], "--cfg: nan is not a finite number"),
                          (["--gamma", "inf"], "--gamma: inf is not a finite number"),
                          (["--sc-cfg", "-inf"], "--sc-cfg: -inf is not a finite number")):
        capsys.readouterr()
        assert main(["sample", "--run", run, *args]) == 2, args
        assert message in _err_line(capsys)
    from elfctl.errors import ConfigError
    from elfctl.sampling.run import SampleRequest, run_sampling

    with pytest.raises(ConfigError, match="^sample.cfg: nan is not a finite number"):
        next(run_sampling(SampleRequest(ref=Path(run), settings={"cfg": float("nan")})))


def test_python_entry_takes_settings_by_key(make_run, tmp_path):
    from elfctl.sampling.run import SampleRequest, run_sampling

    run = make_run()
    out = tmp_path / "api.jsonl"
    lines = []
    [(path, header)] = list(run_sampling(SampleRequest(ref=run, settings={"steps": 2, "gamma": 1.0}, seeds=[3],
                                                       out=out), log=lines.append))
    assert path == out and header["sampler"]["steps"] == 2 and header["sampler"]["gamma"] == 1.0
    assert header["seed"] == 3 and len(_lines(out)) == 1 + 3
    assert header["precision"] == "fp32" and header["compile"] is False


def test_out_directory_means_the_default_name_inside_it(make_run, tmp_path, capsys):
    run = make_run()
    new_dir = tmp_path / "fresh"
    assert main(["sample", "--run", str(run), "--num-samples", "1", "--out", f"{new_dir}/"]) == 0
    [written] = list(new_dir.iterdir())
    assert written.name.startswith("sde-3-s0-") and _lines(written)[0]["num_samples"] == 1
    assert main(["sample", "--run", str(run), "--num-samples", "1", "--out", str(new_dir)]) == 0  # existing dir
    assert len(list(new_dir.glob("*.jsonl"))) >= 1 and not list(new_dir.glob(".*tmp*"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--out", str(blocker / "x.jsonl")]) == 2
    assert "--out:" in _err_line(capsys)
    assert "seed 0:" not in capsys.readouterr().out  # refused before sampling


def test_interrupt_keeps_the_finished_batches(make_run, tmp_path, capsys, monkeypatch):
    from elfctl.sampling.sampler import EulerSampler

    run = make_run()
    real, calls = EulerSampler.sample, []

    def second_batch_interrupted(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(EulerSampler, "sample", second_batch_interrupted)
    out = tmp_path / "k.jsonl"
    assert main(["sample", "--run", str(run), "--num-samples", "3", "--batch-size", "2", "--out", str(out)]) == 130
    partial = tmp_path / "k.jsonl.partial"
    assert not out.exists() and partial.is_file()
    rows = _lines(partial)
    assert rows[0]["type"] == "header" and rows[0]["partial"] is True
    assert [r["index"] for r in rows[1:]] == [0, 1]
    assert f"kept the 2 samples drawn before the stop in {partial}" in capsys.readouterr().out
    monkeypatch.setattr(EulerSampler, "sample", real)
    assert main(["sample", "--run", str(run), "--num-samples", "3", "--batch-size", "2", "--out", str(out)]) == 0
    assert not partial.exists() and [r["token_ids"] for r in _lines(out)[1:3]] == [r["token_ids"] for r in rows[1:]]


def test_conditional_default_inputs_are_cut_as_training_cut_them(make_run, tmp_path, capsys):
    from elfctl.config import load_resolved
    from elfctl.data.dataset import reference_texts
    from elfctl.data.tokenize import load_tokenizer, token_ids

    run = make_run(conditional=True)
    cfg = load_resolved(run / "config.yaml")
    held = reference_texts(cfg, n=3)
    tok = load_tokenizer(cfg.encoder)
    long = [len(token_ids(tok, r["input"])) > 6 for r in held]  # the condition holds max_input_length 6 tokens
    assert any(long)  # the situation of the issue: held-out inputs longer than the model's condition
    out = tmp_path / "h.jsonl"
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--out", str(out)]) == 0  # used to stop: "prompt 0: ... at most 6"
    assert f"({sum(long)} cut to 6 tokens, as in training)" in capsys.readouterr().out
    rows = _lines(out)[1:]
    assert [r["input"] for r in rows] == [r["input"] for r in held]
    # every output keeps max_length − max_input_length = 10 tokens after its condition, however long the condition
    assert [len(r["token_ids"]) for r in rows] == [16 - 6] * len(rows)


def test_conditional_outputs_keep_max_new_tokens_after_the_condition(make_run, tmp_path):
    run = make_run(conditional=True)  # max_length 16, max_input_length 6
    out = tmp_path / "m.jsonl"
    # a 2-token condition leaves 14 positions; the authors keep max_length − max_input_length = 10 of them
    assert main(["sample", "--run", str(run), "--prompt", "the cat", "--out", str(out)]) == 0
    head, row = _lines(out)
    assert (head["cond_layout"], head["max_new_tokens"], len(row["token_ids"])) == ("authors", 10, 10)
    assert main(["sample", "--run", str(run), "--prompt", "the cat", "--max-new-tokens", "3", "--out", str(out)]) == 0
    head, row = _lines(out)
    assert (head["max_new_tokens"], len(row["token_ids"])) == (3, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_errors_name_the_flag(make_run, capsys):
    assert main(["sample", "--run", str(make_run()), "--device", "cuda"]) == 2
    line = _err_line(capsys)
    assert line.startswith("error: --device: 'cuda'") and "train.device" not in line


def test_flags_that_would_be_ignored_are_refused_or_warned(make_run, tmp_path, capsys):
    run = str(make_run())
    for args, message in ((["--infill-length", "3"], "--infill-length: sets the generated length"),
                          (["--seed", "1", "--seeds", "2,3"], "--seed and --seeds both given"),
                          (["--seeds", "1,2,1"], "--seeds: 1 given more than once")):
        capsys.readouterr()
        assert main(["sample", "--run", run, *args]) == 2, args
        assert message in _err_line(capsys)
    cond = str(make_run("cond", conditional=True))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"input": "a dog ran"}\n{"input": "the cat"}\n')
    out = tmp_path / "few.jsonl"
    capsys.readouterr()
    assert main(["sample", "--run", cond, "--input", str(inputs), "--num-samples", "5", "--out", str(out)]) == 0
    warnings = [x for x in capsys.readouterr().out.splitlines() if x.startswith("warning:")]
    assert warnings == [f"warning: 5 samples asked for, but --input {inputs} has 2 inputs: drawing 2, one per input"]
    assert len(_lines(out)) == 1 + 2
    # no --num-samples: the recipe's sample.num_samples (3) is more than the file's 2 inputs; said in one line
    assert main(["sample", "--run", cond, "--input", str(inputs), "--out", str(out)]) == 0
    said = [x for x in capsys.readouterr().out.splitlines() if "inputs" in x]
    assert said == [f"--input {inputs} has 2 inputs: drawing 2, one per input (the recipe's sample.num_samples, 3, "
                    f"applies to the held-out inputs only)"]
    assert len(_lines(out)) == 1 + 2
    assert main(["sample", "--run", cond, "--prompt", "the cat", "--out", str(out)]) == 0
    assert len(_lines(out)) == 1 + 1  # one sample of a prompt unless --num-samples asks for more


def test_compile_hands_the_network_to_torch_compile(make_run, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    out = tmp_path / "c.jsonl"
    assert main(["sample", "--run", str(make_run()), "--compile", "--num-samples", "1", "--out", str(out)]) == 0
    assert len(compiled) == 1 and _lines(out)[0]["compile"] is True


# ---------------------------------------------------------------------------------------------- issue 28: trajectories
def test_trajectory_all_records_every_step_with_display_tokens(make_run, tmp_path):
    run = make_run()
    out = tmp_path / "t.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out), "--trajectory", "all", "--num-samples", "3"]) == 0
    rows = _lines(out)
    header, samples = rows[0], rows[1:]
    # every step decoded once per batch, counted apart from the draw's own passes (2 batches of <= 2 rows)
    assert header["nfe_breakdown"] == {"denoise": 3, "decode": 1, "trajectory": 3, "rows_per_denoise": 1}
    assert header["nfe"] == 3 + 1 + 3
    for s in samples:
        assert [f["step"] for f in s["trajectory"]] == [0, 1, 2]
        for f in s["trajectory"]:
            assert "".join(f["tokens"]) == f["text"]  # the tokens are the text, piece by piece
            assert not {"[SEP]", "[PAD]"} & {t.strip() for t in f["tokens"]}
            assert "pinned" not in f
    assert main(["sample", "--run", str(run), "--out", str(out), "--trajectory", "1", "--num-samples", "1"]) == 0
    assert [f["step"] for f in _lines(out)[1]["trajectory"]] == [1]


def test_trajectory_flag_errors(make_run, capsys):
    run = str(make_run())
    for value, message in (("last", "--trajectory: expected 'all' or comma-separated step indices"),
                           ("0,3", "--trajectory: step 3 is out of range; steps are 0..2")):
        capsys.readouterr()
        assert main(["sample", "--run", run, "--trajectory", value]) == 2
        assert message in _err_line(capsys)


def test_infill_trajectory_marks_the_pinned_prefix_and_suffix(make_run, tmp_path):
    run = make_run()
    out = tmp_path / "i.jsonl"
    assert main(["sample", "--run", str(run), "--prefix", "the big", "--suffix", "on the mat", "--out", str(out),
                 "--sampler", "ode", "--trajectory", "all", "--num-samples", "2"]) == 0
    for s in _lines(out)[1:]:
        for f in s["trajectory"]:
            (a, b), (c, d) = f["pinned"]
            assert (a, b) == (0, 2) and d == len(f["tokens"])
            assert "".join(f["tokens"][a:b]) == "the big" and "".join(f["tokens"][c:d]).strip() == "on the mat"
            assert f["text"] == "".join(f["tokens"])


def test_a_frame_is_cut_as_the_final_text_is(tiny_encoder_dir):
    """Hand-made rows: a conditional frame is its target (not the prompt before the condition's eos); an infill
    frame is prefix + middle (cut at its eos) + suffix, with both pinned ranges."""
    from elfctl.data.tokenize import load_tokenizer
    from elfctl.config import load_config
    from elfctl.sampling.run import _frame

    tok = load_tokenizer(load_config(None, [f"encoder.source={tiny_encoder_dir}"]).encoder)
    ids = {w: tok.convert_tokens_to_ids(w) for w in "the cat dog ran big on mat [SEP] [PAD]".split()}
    sep, pad = ids["[SEP]"], ids["[PAD]"]
    row = [ids["the"], ids["cat"], sep, ids["dog"], ids["ran"], sep, pad]
    assert _frame(tok, 4, row, 3, None, {}) == {"step": 4, "text": "dog ran", "tokens": ["dog", " ran"]}
    assert _frame(tok, 0, row, 0, None, {})["text"] == "the cat"
    layout = {"prefix_ids": [ids["the"], ids["big"]], "suffix_ids": [ids["on"], ids["mat"], sep],
              "middle_start": 2, "middle_len": 3}
    row = [ids["the"], ids["big"], ids["cat"], sep, ids["dog"], ids["on"], ids["mat"], sep, pad]
    assert _frame(tok, 1, row, 0, layout, {}) == {"step": 1, "text": "the big cat on mat",
                                                  "tokens": ["the", " big", " cat", " on", " mat"],
                                                  "pinned": [[0, 2], [3, 5]]}


def test_sample_then_view_end_to_end(make_run, tmp_path, capsys):
    from PIL import Image

    run = make_run()
    traj, page, gif = tmp_path / "traj.jsonl", tmp_path / "traj.html", tmp_path / "traj.gif"
    assert main(["sample", "--run", str(run), "--num-samples", "2", "--trajectory", "all", "--out", str(traj)]) == 0
    assert main(["view", str(traj), "--gif", str(gif)]) == 0
    assert f"wrote {page} (1 panel, 3 frames; samples #0, #1 of 2)" in capsys.readouterr().out
    final = _lines(traj)[1]["trajectory"][-1]
    assert json.dumps(final["tokens"][0], ensure_ascii=False)[1:-1] in page.read_text()
    with Image.open(gif) as im:
        assert im.n_frames == 3

"""`elfctl sample` end to end on a checkpoint written in the test (no training): files, header, errors."""

import json
from pathlib import Path

import pytest
import torch

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.model import build_model
from elfctl.train.checkpoint import save_checkpoint


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
    long = "the cat sat on the mat and the dog ran"  # 10 words; the condition holds 6 − 1 = 5
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", long]) == 2
    assert "prompt 0: 10 tokens" in _err_line(capsys)
    assert main(["sample", "--run", str(run), "--prompt", long, "--truncate", "--num-samples", "1",
                 "--out", str(out)]) == 0
    assert "truncated from 10 to 5 tokens" in capsys.readouterr().out
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

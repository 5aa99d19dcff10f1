"""The commands together, as a user runs them: train → sample → eval, on a tiny encoder and corpus."""

import json
from pathlib import Path

from elfctl.cli import main


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_train_sample_eval_unconditional(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe()
    assert main(["train", recipe]) == 0
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and len(_lines(run / "metrics.jsonl")) == 3
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out), "--trajectory", "0,2", "--seed", "4"]) == 0
    rows = _lines(out)
    header, samples = rows[0], rows[1:]
    assert header["type"] == "header" and header["step"] == 3 and header["sampler"]["steps"] == 3
    assert header["guidance"]["cfg_applies_to"] == "self-conditioning" and header["nfe"] == 3 + 2 + 1
    assert len(samples) == 3 and all(isinstance(s["text"], str) and s["trajectory"] for s in samples)
    # same seed, same settings -> identical text
    again = tmp_path / "s2.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(again), "--trajectory", "0,2", "--seed", "4"]) == 0
    assert [r["token_ids"] for r in _lines(again)[1:]] == [r["token_ids"] for r in samples]
    res = tmp_path / "e.json"
    assert main(["eval", "--metric", "diversity", "--samples", str(out), "--out", str(res)]) == 0
    assert "distinct_1" in json.loads(res.read_text())["diversity"]
    # --cfg on an unconditional model sets the SC-CFG scale; a different --sc-cfg is an error
    assert main(["sample", "--run", str(run), "--out", str(out), "--cfg", "2.0"]) == 0
    assert _lines(out)[0]["guidance"]["sc_cfg"] == 2.0
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--cfg", "2.0", "--sc-cfg", "3.0"]) == 2
    assert "same guidance" in capsys.readouterr().err


def test_infilling_keeps_the_pinned_text(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    assert main(["train", recipe]) == 0
    out = tmp_path / "i.jsonl"
    assert main(["sample", "--run", str(tmp_path / "run"), "--prefix", "the big", "--suffix", "on the mat",
                 "--out", str(out)]) == 0
    for s in _lines(out)[1:]:
        assert s["text"].startswith("the big") and s["text"].endswith("on the mat")


def test_conditional_prompt_and_cfg(tiny_recipe, tmp_path):
    recipe = tiny_recipe(conditional=True)
    assert main(["train", recipe, "objective.label_drop_prob=0.5"]) == 0
    out = tmp_path / "c.jsonl"
    assert main(["sample", "--run", str(tmp_path / "run"), "--prompt", "the cat sat", "--cfg", "2.0",
                 "--num-samples", "2", "--out", str(out)]) == 0
    rows = _lines(out)
    assert rows[0]["guidance"] == {"cfg": 2.0, "sc_cfg": 3.0, "cfg_applies_to": "condition", "cfg_flag_set": "cfg"}
    assert rows[0]["rows_per_batch"] == 2 * 2 * 3 + 2  # CFG doubles every denoise pass; decode is single
    assert all(r["input"] == "the cat sat" for r in rows[1:])


def test_sample_errors(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe()
    assert main(["train", recipe]) == 0
    run = str(tmp_path / "run")
    for args, message in ((["--steps", "0"], "--steps: 0 is out of range"),
                          (["--cfg", "-1"], "--cfg: -1.0 is out of range"),
                          (["--gamma", "-1"], "--gamma: -1.0 is out of range"),
                          (["--sampler", "heun"], "--sampler: 'heun' is not valid"),
                          (["--prompt", "x"], "this model is unconditional")):
        capsys.readouterr()
        assert main(["sample", "--run", run, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main(["sample", "--run", str(tmp_path / "missing")]) == 2
    assert "looked at" in capsys.readouterr().err
    assert main(["sample", "--runs-dir", str(tmp_path / "nothing-here")]) == 2
    assert "no trained run found under" in capsys.readouterr().err
    from safetensors.torch import save_file
    import torch

    from elfctl.rundir import checkpoint as ckpt

    def written():
        return sorted(str(p) for p in tmp_path.rglob("*.jsonl") if "samples" in p.parts)

    before = written()
    step_dir = ckpt.latest_checkpoint(tmp_path / "run")
    # weights of another architecture in an intact checkpoint: one line naming the mismatch
    other = ckpt.save_checkpoint(tmp_path / "other", 5, model_state={"flow_head.weight": torch.zeros(3, 3)},
                                 ema_state={"flow_head.weight": torch.zeros(3, 3)}, train_state={},
                                 meta={k: v for k, v in ckpt.read_meta(step_dir).items() if k not in ("files", "step")},
                                 config_yaml=(step_dir / "config.yaml").read_text())
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match this architecture" in err[0], err
    # a damaged weights file (valid safetensors, other bytes than the checkpoint recorded): one line naming it
    ema = step_dir / "ema.safetensors"
    save_file({"flow_head.weight": torch.zeros(3, 3)}, str(ema))
    assert main(["sample", "--checkpoint", str(step_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ema) in err[0] and "damaged" in err[0], err
    # a truncated one, reached through the run directory
    ema.write_bytes(b"\0" * 7)
    assert main(["sample", "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ema) in err[0] and "truncated" in err[0], err
    assert written() == before  # no failed sample call left a samples file behind

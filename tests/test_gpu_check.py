"""benchmarks/gpu_check.py's machinery, on the CPU: a timed-out step's whole process group is killed, the report
is rewritten after every step, and the offline inputs of its real `elfctl train` step make a valid recipe."""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_a_timed_out_step_has_its_process_group_killed(tmp_path):
    gc = _load("gpu_check")
    pidfile = tmp_path / "child.pid"
    # the step starts a grandchild that would outlive a plain kill of the step's own process
    code = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    t0 = time.monotonic()
    rc, out, err = gc.run_group([sys.executable, "-c", code], env=dict(os.environ), limit=3)
    assert rc == 124 and "timed out after 3 s (process group killed)" in err
    assert time.monotonic() - t0 < 20
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_the_report_is_rewritten_after_every_step(tmp_path):
    gc = _load("gpu_check")
    run = gc.Run(tmp_path, budget=60, env={"gpus": [], "torch": "x", "triton": "y", "cuda": None})
    run.sh("first", [sys.executable, "-c", "print('hello')"], limit=30, need=1)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in report["steps"]] == ["first"] and report["steps"][0]["status"] == "ok"
    run.sh("second", [sys.executable, "-c", "raise SystemExit(3)"], limit=30, need=1)
    run.skip("third", "because")
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(s["step"], s["status"]) for s in report["steps"]] == [("first", "ok"), ("second", "failed"),
                                                                   ("third", "skipped")]
    assert report["failed"] == ["second"] and report["skipped"] == ["third: because"]
    assert "| cpu (no CUDA) | third | skipped | because |" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.parametrize("size", ["cpu", "gpu"])
def test_offline_inputs_make_an_owt_recipe_that_needs_no_network(tmp_path, size):
    from elfctl.config import load_config

    assets = _load("gpu_check_assets")
    recipe = assets.make(tmp_path, size)
    cfg = load_config(recipe)
    assert cfg.train.micro_batch_size == "auto" and cfg.optim.optimizer == "muon"  # the owt recipe's own
    assert cfg.data.pretokenized is None and cfg.encoder.mode == "random"
    assert (cfg.train.steps, cfg.train.epochs) == (3, None)
    for path in (cfg.encoder.source, cfg.encoder.tokenizer, cfg.data.dataset):
        assert Path(path).exists() and Path(path).is_relative_to(tmp_path)
    if size == "gpu":  # the paper's shapes: ELF-B, length 1024, T5-small's width and vocabulary
        enc = json.loads((tmp_path / "encoder" / "config.json").read_text())
        assert (cfg.model.preset, cfg.data.max_length, enc["d_model"]) == ("elf-b", 1024, 512)
        tok = json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text())
        assert len(tok["model"]["vocab"]) == 32100

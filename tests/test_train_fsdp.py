"""FSDP2 training (train.fsdp=true): same result as one process, exact resume, unchanged checkpoint format,
and the refused configurations. CPU only: two gloo ranks under torchrun, a tiny network."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from elfctl import cli
from elfctl.sampling.loading import load_for_sampling
from elfctl.rundir import checkpoint as ckpt

WORKER = str(Path(__file__).resolve().parent / "train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# 2 blocks (each its own FSDP unit, then the root), 16 wide; AdamW (FSDP refuses Muon).
COMMON = ["model.depth=2", "model.hidden_size=16", "optim.optimizer=adamw", "train.steps=6", "train.save_every=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_process(run_dir: Path, *over: str) -> None:
    r = subprocess.run([sys.executable, WORKER, str(run_dir), "train.grad_accum=2", *COMMON, *over], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def two_fsdp_ranks(run_dir: Path, *over: str, fsdp: bool = True) -> str:
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(_free_port()), WORKER, str(run_dir),
                        f"train.fsdp={str(fsdp).lower()}", *COMMON, *over], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout + r.stderr


def losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}"


def cut_at(src: Path, dst: Path, step: int) -> Path:
    """A copy of run ``src`` as if it had been stopped right after checkpoint ``step``."""
    shutil.copytree(src, dst)
    for later in ckpt.list_checkpoints(dst):
        if int(later.name.split("_")[1]) > step:
            shutil.rmtree(later)
    return dst


def assert_same_weights(a: Path, b: Path, *, exact: bool, names=("model", "ema")) -> None:
    for name in names:
        ta, tb = ckpt.load_tensors(a, name), ckpt.load_tensors(b, name)
        assert list(ta) == list(tb), name
        for k in ta:
            assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, (name, k)
            if exact:
                assert torch.equal(ta[k], tb[k]), (name, k)
            else:
                torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-7, msg=f"{name} {k}")


def assert_same_optimizer(a: Path, b: Path, *, exact: bool) -> None:
    sa, sb = ckpt.load_train_state(a), ckpt.load_train_state(b)
    assert sa["step"] == sb["step"]
    assert len(sa["optimizers"]) == len(sb["optimizers"])
    for oa, ob in zip(sa["optimizers"], sb["optimizers"]):
        assert oa["param_groups"] == ob["param_groups"]
        assert list(oa["state"]) == list(ob["state"])  # torch's integer parameter ids, same order
        for i in oa["state"]:
            assert list(oa["state"][i]) == list(ob["state"][i])
            for k, va in oa["state"][i].items():
                vb = ob["state"][i][k]
                assert type(va) is type(vb) and va.shape == vb.shape and va.dtype == vb.dtype, (i, k)
                if exact:
                    assert torch.equal(va, vb), (i, k)
                else:
                    torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-8, msg=f"state {i} {k}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 6 steps, global batch 8: one process (2 micro-steps of 4), and two FSDP ranks (4 each)."""
    root = tmp_path_factory.mktemp("fsdp")
    one_process(root / "one")
    log = two_fsdp_ranks(root / "two")
    return root, log


def test_two_fsdp_ranks_match_one_process_with_the_same_global_batch(runs):
    root, log = runs
    one, two = root / "one", root / "two"
    assert "world size 2; FSDP" in log
    assert "returned a view tensor" not in log  # the FSDP2 warning on the heads' outputs is silenced
    la, lb = losses(one), losses(two)
    assert sorted(la) == sorted(lb) == list(range(1, 7))
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-6, abs=1e-7)
    for step in (3, 6):  # weights, EMA and optimizer state: full tensors in the unsharded layout
        assert_same_weights(step_dir(one, step), step_dir(two, step), exact=False)
        assert_same_optimizer(step_dir(one, step), step_dir(two, step), exact=False)
    assert sorted(p.name for p in step_dir(two, 6).iterdir()) == sorted(p.name for p in step_dir(one, 6).iterdir())


def test_fsdp_resume_is_exact_and_its_checkpoints_load_unsharded(runs, tmp_path):
    root, _ = runs
    one, two = root / "one", root / "two"
    # Stopped after the step-3 checkpoint, then resumed under FSDP: bit-for-bit the uninterrupted run.
    cut = cut_at(two, tmp_path / "cut", 3)
    assert "resumed" in two_fsdp_ranks(cut)
    assert losses(cut) == losses(two)
    assert_same_weights(step_dir(cut, 6), step_dir(two, 6), exact=True)
    assert_same_optimizer(step_dir(cut, 6), step_dir(two, 6), exact=True)

    # The sampler's loader takes the FSDP checkpoint as it takes any other (strict key and shape check).
    for ema in (True, False):
        loaded = load_for_sampling(step_dir(two, 6), ema=ema, with_text=False)
        want = ckpt.load_tensors(step_dir(two, 6), "ema" if ema else "model")
        got = loaded.model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)

    # One plain process resumes the FSDP run: it continues as the one-process run does.
    single = cut_at(two, tmp_path / "single", 3)
    one_process(single)
    for step, loss in losses(one).items():
        assert losses(single)[step] == pytest.approx(loss, rel=1e-6, abs=1e-7)
    assert_same_weights(step_dir(single, 6), step_dir(one, 6), exact=False)
    assert_same_optimizer(step_dir(single, 6), step_dir(one, 6), exact=False)


@pytest.mark.parametrize("fsdp", [True, False], ids=["fsdp", "ddp"])
def test_two_ranks_train_a_learned_encoder_like_one_process(fsdp, tmp_path):
    # DDP wraps only the network: the learned encoder's gradients must still be averaged over the ranks
    over = ["--learned-encoder", "train.steps=2", "train.save_every=2"]
    one_process(tmp_path / "one", *over)
    two_fsdp_ranks(tmp_path / "two", *over, fsdp=fsdp)
    la, lb = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert la.keys() == lb.keys() and all(la[s] == pytest.approx(lb[s], rel=1e-6, abs=1e-7) for s in la)
    assert_same_weights(step_dir(tmp_path / "one", 2), step_dir(tmp_path / "two", 2), exact=False,
                        names=("model", "ema", "encoder"))


@pytest.mark.parametrize("over, message", [
    (["optim.optimizer=muon"], "train.fsdp=true does not work with optim.optimizer=muon"),
    (["optim.optimizer=adamw"], "train.fsdp=true needs torchrun with >= 2 processes"),
])
def test_fsdp_refuses_muon_and_a_single_process(over, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = tmp_path / "run"
    code = cli.main(["train", "quickstart", "train.fsdp=true", *over, f"train.run_dir={run}"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if "muon" in over[0]:
        assert "optim.optimizer=adamw" in lines[0]
    assert not run.exists()  # refused before any work

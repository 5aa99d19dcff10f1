"""Training survives what happens to real runs: SIGTERM/SIGINT, a corrupt latest checkpoint, a second process on
the same run directory, a failed checkpoint write; and a run's saved config never changes under it."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from elfctl.config import load_config
from elfctl.errors import ConfigError, ElfRuntimeError
from elfctl.rundir import checkpoint as ckpt
from elfctl.train.stop import TrainingStopped
from elfctl.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402

WORKER = str(Path(__file__).resolve().parent / "train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
QUIET = dict(log=lambda s: None)


def _cfg(run_dir, *over):
    return load_config(None, ["train.steps=8", "train.batch_size=4", "train.log_every=4", "train.save_every=4",
                              "data.max_length=6", "model.depth=1", "model.hidden_size=16", "model.num_heads=2",
                              "optim.optimizer=adamw", "optim.lr=0.01", f"train.run_dir={run_dir}", *over])


def _losses(run_dir):
    return {m["step"]: m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def _same_weights(a, b):
    ta, tb = ckpt.load_tensors(a, "ema"), ckpt.load_tensors(b, "ema")
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def signalling(sig, at_call, times=1):
    """SyntheticData that signals this process while encoding the ``at_call``-th batch (a deterministic step)."""

    class Data(SyntheticData):
        calls = 0

        def latents(self, batch, drop):
            Data.calls += 1
            if Data.calls == at_call:
                for _ in range(times):
                    os.kill(os.getpid(), sig)
            return super().latents(batch, drop)

    return Data


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce exactly."""
    run = tmp_path_factory.mktemp("ref") / "r"
    Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
    return run


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_the_step_checkpoints_it_and_resumes_exactly(tmp_path, reference, sig, code):
    run = tmp_path / "r"
    # the signal arrives while step 3 encodes its batch: step 3 completes, is checkpointed, the run stops
    before = signal.getsignal(sig)
    with pytest.raises(TrainingStopped) as e:
        Trainer(_cfg(run), data_source=signalling(sig, at_call=3), **QUIET).run()
    assert e.value.exit_code == code and "after step 3" in str(e.value) and "\n" not in str(e.value)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000003"]
    assert signal.getsignal(sig) == before  # the handlers are restored when training ends
    Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
    # log_every=4: the step-4 line averages steps 1-4 although the run stopped after step 3
    assert _losses(run) == _losses(reference) and sorted(_losses(run)) == [4, 8]
    assert _same_weights(ckpt.latest_checkpoint(run), ckpt.latest_checkpoint(reference))


def test_a_second_ctrl_c_stops_at_once_without_a_new_checkpoint(tmp_path):
    run = tmp_path / "r"
    r = subprocess.run([sys.executable, WORKER, str(run), "--signal-at", "7:INT:2"], env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 130, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000004"]  # step 7 was not finished/saved


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one_and_is_kept(tmp_path, reference):
    run = tmp_path / "r"
    Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
    ema = run / "checkpoints" / "step_00000008" / "ema.safetensors"
    torn = ema.read_bytes()[:100]
    ema.write_bytes(torn)  # truncated, as by a full disk or a torn copy
    with pytest.raises(ckpt.CorruptCheckpoint, match="ema.safetensors: 100 bytes"):
        ckpt.load_tensors(ema.parent, "ema")
    lines = []
    Trainer(_cfg(run), data_source=SyntheticData, log=lines.append).run()
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 1 and "step_00000008" in warnings[0] and "step_00000004" in warnings[0]
    assert "kept" in warnings[0]
    assert any("resumed" in x and "from step 4" in x for x in lines)
    kept = run / "checkpoints" / "corrupt-step_00000008" / "ema.safetensors"
    assert kept.read_bytes() == torn  # the corrupt checkpoint is kept as it was, out of the listing
    assert _losses(run) == _losses(reference)
    assert _same_weights(ckpt.latest_checkpoint(run), ckpt.latest_checkpoint(reference))


def test_every_checkpoint_corrupt_is_one_line(tmp_path):
    run = tmp_path / "r"
    Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, **QUIET).run()
    (run / "checkpoints" / "step_00000004" / "train_state.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"every checkpoint of .* is corrupt.*train_state.pt"):
        Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, **QUIET).run()


HOLDER = ("import sys; from elfctl.rundir.lock import RunLock; lock = RunLock(sys.argv[1], command='train')"
          ".acquire(); print('locked', flush=True); sys.stdin.read()")


def test_a_second_process_on_the_run_directory_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    run = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # blocks until the lock is held: no polling
        with pytest.raises(ConfigError) as e:
            Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
        msg = str(e.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in msg and "\n" not in msg
        assert not ckpt.list_checkpoints(run) and not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, but nobody holds it
        holder.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    lines = []
    Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, log=lines.append).run()
    assert any(f"left by pid {holder.pid}" in x and "no longer running" in x for x in lines)
    assert not (run / ".lock").exists()  # released at the end


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_the_run_resumable(tmp_path, reference, monkeypatch):
    run = tmp_path / "r"
    real = ckpt.atomic_write_bytes
    calls = {"n": 0}

    def full_disk(path, data):
        calls["n"] += 1
        if "step_00000008" in str(path) and path.name == "ema.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full_disk)
    with pytest.raises(ElfRuntimeError) as e:
        Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
    msg = str(e.value)
    assert "checkpoint step 8" in msg and "No space left on device" in msg and "step_00000004 is intact" in msg
    assert "\n" not in msg
    assert os.listdir(run / "checkpoints") == ["step_00000004"]  # no torn or temporary directory left
    ckpt.verify_checkpoint(run / "checkpoints" / "step_00000004")
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    Trainer(_cfg(run), data_source=SyntheticData, **QUIET).run()
    assert _losses(run) == _losses(reference)
    assert _same_weights(ckpt.latest_checkpoint(run), ckpt.latest_checkpoint(reference))


def test_a_runs_saved_config_never_changes_and_new_starts_another_directory(tmp_path):
    run = tmp_path / "r"
    Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, **QUIET).run()
    saved = (run / "config.yaml").read_bytes()
    with pytest.raises(ConfigError) as e:
        Trainer(_cfg(run, "train.steps=4", "optim.schedule=cosine", "sample.steps=7"), data_source=SyntheticData,
                **QUIET).run()
    msg = str(e.value)
    assert "2 differences" in msg and "optim.schedule: run has 'constant', now 'cosine'" in msg
    assert "sample.steps: run has 32, now 7" in msg and "--new" in msg and "\n" not in msg
    assert (run / "config.yaml").read_bytes() == saved
    assert (run / "checkpoints" / "step_00000004" / "config.yaml").read_bytes() == saved
    # the same config again: nothing to do, nothing rewritten
    Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, **QUIET).run()
    assert (run / "config.yaml").read_bytes() == saved
    # --new: a new directory with its own config; the old run is untouched
    res = Trainer(_cfg(run, "train.steps=4", "optim.schedule=cosine"), new=True, data_source=SyntheticData,
                  **QUIET).run()
    assert res.run_dir == tmp_path / "r-2" and ckpt.latest_checkpoint(res.run_dir).name == "step_00000004"
    assert load_config(res.run_dir / "config.yaml").optim.schedule == "cosine"
    assert (run / "config.yaml").read_bytes() == saved


def test_a_finished_run_trained_longer_continues_and_logs_the_losses_of_one_longer_run(tmp_path):
    # 4 steps, then the same run to 6: the same losses at steps 1-6 as 6 steps from scratch (constant lr)
    whole, run = tmp_path / "whole", tmp_path / "r"
    Trainer(_cfg(whole, "train.steps=6", "train.log_every=1"), data_source=SyntheticData, **QUIET).run()
    Trainer(_cfg(run, "train.steps=4", "train.log_every=1"), data_source=SyntheticData, **QUIET).run()
    lines = []
    res = Trainer(_cfg(run, "train.steps=6", "train.log_every=1"), data_source=SyntheticData,
                  log=lines.append).run()
    assert res.step == 6 and _losses(run) == _losses(whole) and sorted(_losses(run)) == [1, 2, 3, 4, 5, 6]
    assert _same_weights(ckpt.latest_checkpoint(run), ckpt.latest_checkpoint(whole))
    assert any("extending" in line and "4 -> 6 steps" in line and "step 4" in line for line in lines)
    assert load_config(run / "config.yaml").train.steps == 6  # the run's config now says how long it trains
    (change,) = [json.loads(x) for x in (run / "length_changes.jsonl").read_text().splitlines()]
    assert change["at_step"] == 4 and (change["old_steps"], change["new_steps"]) == (4, 6)
    assert change["keys"] == {"train.steps": {"old": 4, "new": 6}}
    # a length at or below where the run is: nothing to do, nothing recorded or rewritten
    saved = (run / "config.yaml").read_bytes()
    Trainer(_cfg(run, "train.steps=5", "train.log_every=1"), data_source=SyntheticData, **QUIET).run()
    assert (run / "config.yaml").read_bytes() == saved
    assert len((run / "length_changes.jsonl").read_text().splitlines()) == 1
    # the length and anything else: still refused as a whole
    with pytest.raises(ConfigError, match="optim.lr: run has 0.01, now 0.02"):
        Trainer(_cfg(run, "train.steps=8", "train.log_every=1", "optim.lr=0.02"), data_source=SyntheticData,
                **QUIET).run()


def test_a_run_given_in_steps_can_be_extended_in_epochs(tmp_path):
    run = tmp_path / "r"
    Trainer(_cfg(run, "train.steps=2"), data_source=SyntheticData, **QUIET).run()
    lines = []
    res = Trainer(_cfg(run, "train.steps=null", "train.epochs=2"), data_source=SyntheticData,
                  log=lines.append).run()
    cfg = load_config(run / "config.yaml")
    assert (cfg.train.steps, cfg.train.epochs) == (None, 2) and res.step > 2
    change = json.loads((run / "length_changes.jsonl").read_text())
    assert change["keys"] == {"train.epochs": {"old": None, "new": 2}, "train.steps": {"old": 2, "new": None}}
    assert change["old_steps"] == 2 and change["new_steps"] == res.step


class BrokenData(SyntheticData):
    def __init__(self, cfg, run_dir, device):
        raise ConfigError("data.dataset: no such file")


def test_a_failed_first_train_leaves_no_run_directory_behind(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match="no such file"):
        Trainer(_cfg(run), data_source=BrokenData, **QUIET).run()
    assert not run.exists()
    # an existing run that fails later keeps everything it had
    Trainer(_cfg(run, "train.steps=4"), data_source=SyntheticData, **QUIET).run()
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError):
        Trainer(_cfg(run, "train.steps=4"), data_source=BrokenData, **QUIET).run()
    assert sorted(p.name for p in run.iterdir()) == before


def test_how_a_run_executes_may_change_on_resume_what_it_trains_may_not():
    from elfctl.rundir.directory import describe_differences

    base = load_config(None, ["train.grad_accum=1"]).to_dict()
    moved = load_config(None, ["train.grad_accum=2", "train.fsdp=true", "train.device=cpu", "data.num_workers=2",
                               "train.run_dir=elsewhere"]).to_dict()
    assert describe_differences(base, moved) == []  # e.g. FSDP on 2 GPUs resumed on one with grad_accum=2
    bigger = load_config(None, ["train.batch_size=64", "sample.gamma=0.5"]).to_dict()
    assert describe_differences(base, bigger) == ["sample.gamma: run has 1.5, now 0.5",
                                                "train.batch_size: run has 32, now 64"]


def test_checkpoint_tensors_come_back_in_one_order_in_every_process(tmp_path):
    # safetensors' in-memory loader orders keys by a per-process hash; FSDP ranks walking different orders
    # deadlock in mismatched collectives (found by the FSDP resume test), so load_tensors sorts them
    state = {f"w{i}": torch.full((i + 1,), float(i)) for i in range(12)}
    path = ckpt.save_checkpoint(tmp_path, 1, model_state=state, ema_state=state, train_state={}, meta={},
                                config_yaml="{}")
    code = ("import sys; from elfctl.rundir import checkpoint as c; "
            "print(','.join(c.load_tensors(sys.argv[1], 'model')))")
    orders = {subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             check=True).stdout.strip() for _ in range(3)}
    assert orders == {",".join(sorted(state))}

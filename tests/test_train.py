"""Training: exact resume after SIGKILL, DDP equivalence, non-finite loss, checkpoint safety."""

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
from elfctl.train.optim import lr_factor
from elfctl.data.order import BatchOrder
from elfctl.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402

WORKER = str(Path(__file__).resolve().parent / "train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {m["step"]: m["loss"] for m in map(json.loads, lines)}


def test_resume_after_sigkill_reproduces_the_uninterrupted_loss_sequence(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run([sys.executable, WORKER, str(ref)], check=True, env=ENV, capture_output=True, timeout=300)

    # The same run SIGKILLs itself while encoding step 7's batch: steps 1-6 are logged, step 4 is the last
    # checkpoint (a deterministic point, not a polled moment).
    r = subprocess.run([sys.executable, WORKER, str(cut), "--signal-at", "7:KILL"], env=ENV, capture_output=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL
    assert max(losses(cut)) == 6 and ckpt.latest_checkpoint(cut).name == "step_00000004"
    subprocess.run([sys.executable, WORKER, str(cut)], check=True, env=ENV, capture_output=True, timeout=300)

    a, b = losses(ref), losses(cut)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert a == b  # bit-for-bit, step for step
    ta = ckpt.load_tensors(ckpt.latest_checkpoint(ref), "ema")
    tb = ckpt.load_tensors(ckpt.latest_checkpoint(cut), "ema")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["train.steps=3", "train.save_every=3"]
    subprocess.run([sys.executable, WORKER, str(one), "train.grad_accum=2", *common], check=True, env=ENV,
                   capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), WORKER, str(two), *common],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    la, lb = losses(one), losses(two)
    assert la.keys() == lb.keys()
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-5, abs=1e-6)
    wa = ckpt.load_tensors(ckpt.latest_checkpoint(one), "model")
    wb = ckpt.load_tensors(ckpt.latest_checkpoint(two), "model")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)


class NaNData(SyntheticData):
    """Latents turn non-finite from the 6th batch on."""

    calls = 0

    def latents(self, batch, drop):
        NaNData.calls += 1
        x = super().latents(batch, drop)
        return x * float("nan") if NaNData.calls >= 6 else x


def _cfg(run_dir, *over):
    return load_config(None, ["train.steps=8", "train.batch_size=4", "train.log_every=1", "train.save_every=4",
                              "data.max_length=6", "model.depth=1", "model.hidden_size=16", "model.num_heads=2",
                              f"train.run_dir={run_dir}", *over])


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    NaNData.calls = 0
    with pytest.raises(ElfRuntimeError, match="non-finite loss at step 6"):
        Trainer(_cfg(tmp_path / "r"), data_source=NaNData, log=lambda s: None).run()
    latest = ckpt.latest_checkpoint(tmp_path / "r")
    assert latest.name == "step_00000004"
    weights = ckpt.load_tensors(latest, "model")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_fresh_refuses_and_changed_model_refuses_to_resume(tmp_path):
    Trainer(_cfg(tmp_path / "r", "train.steps=4"), data_source=SyntheticData, log=lambda s: None).run()
    with pytest.raises(ConfigError, match="--fresh"):
        Trainer(_cfg(tmp_path / "r"), fresh=True, data_source=SyntheticData, log=lambda s: None).run()
    with pytest.raises(ConfigError, match="model.hidden_size"):
        Trainer(_cfg(tmp_path / "r", "model.hidden_size=32"), data_source=SyntheticData, log=lambda s: None).run()


def test_half_written_checkpoint_never_counts_and_old_ones_are_pruned(tmp_path):
    run = tmp_path / "r"
    Trainer(_cfg(run, "train.steps=12", "train.keep_last=2"), data_source=SyntheticData, log=lambda s: None).run()
    names = [p.name for p in ckpt.list_checkpoints(run)]
    assert names == ["step_00000008", "step_00000012"]
    # A crash mid-write leaves a temp dir, or a step dir without meta.json: neither is a checkpoint.
    (run / "checkpoints" / ".tmp-step_00000016-1").mkdir()
    torn = run / "checkpoints" / "step_00000020"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 10)
    assert ckpt.latest_checkpoint(run).name == "step_00000012"


def test_lr_schedule_warmup_then_constant_or_cosine():
    assert lr_factor(0, warmup=4, total=10, schedule="constant", min_ratio=0) == 0.25
    assert lr_factor(3, warmup=4, total=10, schedule="constant", min_ratio=0) == 1.0
    assert lr_factor(9, warmup=4, total=10, schedule="constant", min_ratio=0) == 1.0
    assert lr_factor(4, warmup=4, total=10, schedule="cosine", min_ratio=0.1) == pytest.approx(1.0)
    assert lr_factor(10, warmup=4, total=10, schedule="cosine", min_ratio=0.1) == pytest.approx(0.1)


def test_batch_order_shards_partition_the_global_batch_and_cover_each_epoch():
    order = BatchOrder(10, global_batch=4, num_shards=2, seed=3)
    steps = [order.indices(s, 0) + order.indices(s, 1) for s in range(5)]
    flat = [i for batch in steps for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert order.indices(2, 1) == BatchOrder(10, 4, 2, 3).indices(2, 1)  # a pure function of (step, shard)


def test_pickle_checkpoint_is_refused_without_trust(tmp_path):
    f = tmp_path / "weights.pt"
    torch.save({"a": torch.ones(1)}, f)
    with pytest.raises(ConfigError, match="pickle"):
        ckpt.resolve_checkpoint(f)
    assert ckpt.resolve_checkpoint(f, trust_pickle=True) == f


def test_cpu_allocator_tuning_can_be_turned_off(monkeypatch):
    import sys

    from elfctl import cpu_allocator

    monkeypatch.setattr(cpu_allocator, "_applied", False)
    monkeypatch.setenv("ELFCTL_MALLOC_TUNING", "0")
    assert cpu_allocator.keep_freed_memory() is False
    monkeypatch.delenv("ELFCTL_MALLOC_TUNING")
    if sys.platform.startswith("linux"):
        assert cpu_allocator.keep_freed_memory() is True and cpu_allocator._applied


def test_ema_warmup_follows_mdlm_and_continues_by_update_number():
    import torch

    from elfctl.train.optim import EMA, ema_decay_at

    assert ema_decay_at(0.9999, 1, True) == 2 / 11 and ema_decay_at(0.9999, 8, True) == 9 / 18
    assert ema_decay_at(0.9999, 10**6, True) == 0.9999 and ema_decay_at(0.9, 1, False) == 0.9
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, 0.9999, warmup=True)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, count=1)   # shadow = d·0 + (1 − d)·1 with d = 2/11
    assert torch.allclose(ema.shadow[0], torch.tensor([[9 / 11]]))
    ema.update(net, count=2)   # d = 3/12: shadow = 0.25·9/11 + 0.75
    assert torch.allclose(ema.shadow[0], torch.tensor([[0.25 * 9 / 11 + 0.75]]))
    plain = EMA(net, 0.5)
    with torch.no_grad():
        net.weight.fill_(3.0)
    plain.update(net, count=7)  # no warm-up: the count does not matter
    assert torch.allclose(plain.shadow[0], torch.tensor([[2.0]]))

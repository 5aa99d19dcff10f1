"""Device choice under torchrun, in a faked torchrun environment (no GPU, no process group is started)."""

import datetime

import pytest
import torch
import torch.distributed as dist

from elfctl.errors import ConfigError
from elfctl.train import distributed
from elfctl.train.distributed import init_distributed
from elfctl.rundir.device import pick_device


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend this machine has two CUDA devices; record set_device and init_process_group calls."""
    calls = {"set_device": [], "init": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(torch.device(d)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls["init"].append(kw))
    return calls


TWO_HOURS = datetime.timedelta(minutes=120)  # train.dist_timeout_min's default


def _torchrun(monkeypatch, rank, world, local):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local))


@pytest.mark.parametrize("spec", ["cuda", "auto", " CUDA "])
def test_cuda_under_torchrun_maps_to_the_local_rank(monkeypatch, fake_gpus, spec):
    _torchrun(monkeypatch, rank=3, world=4, local=1)
    info, device = init_distributed(spec)
    assert device == torch.device("cuda", 1)
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    assert fake_gpus["set_device"] == [torch.device("cuda", 1)]  # an index: set_device("cuda") would raise
    assert fake_gpus["init"] == [{"backend": "nccl", "device_id": torch.device("cuda", 1), "timeout": TWO_HOURS}]


def test_fixed_gpu_under_torchrun_is_refused_in_one_line(monkeypatch, fake_gpus):
    _torchrun(monkeypatch, rank=0, world=2, local=0)
    with pytest.raises(ConfigError, match=r"train.device: 'cuda:0' would put all 2 torchrun ranks on one GPU; "
                                          r"use train.device=cuda") as e:
        init_distributed("cuda:0")
    assert "\n" not in str(e.value)
    assert fake_gpus["set_device"] == [] and fake_gpus["init"] == []  # refused before touching anything


def test_more_ranks_than_gpus_is_refused(monkeypatch, fake_gpus):
    _torchrun(monkeypatch, rank=2, world=3, local=2)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK 2 needs GPU 2, but this machine shows 2 \(0..1\)"):
        init_distributed("auto")


def test_single_process_keeps_explicit_gpus(monkeypatch, fake_gpus):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cuda:1")[1] == torch.device("cuda", 1)
    assert init_distributed("cuda")[1] == torch.device("cuda", 0)
    assert fake_gpus["set_device"] == [] and fake_gpus["init"] == []
    with pytest.raises(ConfigError, match="'cuda:5' needs GPU 5"):
        pick_device("cuda:5")
    with pytest.raises(ConfigError, match="sample.device: 'gpu' is not valid; use auto, cpu, cuda or cuda:N"):
        pick_device("gpu", what="sample.device")


def test_cpu_under_torchrun_uses_gloo(monkeypatch, fake_gpus):
    _torchrun(monkeypatch, rank=1, world=2, local=1)
    info, device = init_distributed("cpu")
    assert device == torch.device("cpu") and info.world_size == 2
    assert fake_gpus["set_device"] == [] and fake_gpus["init"] == [{"backend": "gloo", "timeout": TWO_HOURS}]


def test_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", 1, 2) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        pick_device("cuda", 0, 2)
    assert distributed.DistInfo().is_main


def test_fsdp_blocks_gather_and_reduce_in_bf16_when_training_in_bf16(monkeypatch):
    import torch.distributed.device_mesh as device_mesh
    import torch.distributed.fsdp as fsdp_api

    from elfctl.model import ELF
    from elfctl.train import fsdp

    calls = []
    monkeypatch.setattr(device_mesh, "init_device_mesh", lambda kind, shape: ("mesh", kind, shape))
    monkeypatch.setattr(fsdp_api, "fully_shard", lambda module, **kw: calls.append((module, kw)))
    model = ELF(6, 11, depth=2, hidden_size=16, num_heads=2)
    encoder = torch.nn.Linear(2, 2)

    fsdp.shard(model, torch.device("cuda", 0), 2, encoder, bf16=True)
    assert [m for m, _ in calls] == [*model.blocks, model, encoder]
    for _, kw in calls[:2]:  # the blocks: bf16 all-gathers and reduce-scatters, inputs (the residual) not cast
        policy = kw["mp_policy"]
        assert (policy.param_dtype, policy.reduce_dtype, policy.cast_forward_inputs) == (
            torch.bfloat16, torch.bfloat16, False)
        assert kw["mesh"] == ("mesh", "cuda", (2,))
    assert all("mp_policy" not in kw for _, kw in calls[2:])  # root and encoder run in fp32 outside autocast

    calls.clear()
    fsdp.shard(model, torch.device("cpu"), 2, bf16=False)  # fp32 training: FSDP's default (no policy)
    assert all("mp_policy" not in kw for _, kw in calls) and len(calls) == 3


def test_the_process_group_timeout_is_the_recipes(monkeypatch, fake_gpus, tmp_path):
    """train.dist_timeout_min reaches init_process_group: rank 0 may prepare data for long while the others wait."""
    from elfctl.config import load_config
    from elfctl.train.trainer import Trainer

    _torchrun(monkeypatch, rank=1, world=2, local=1)
    cfg = load_config(None, ["train.device=cpu", "train.dist_timeout_min=300", f"train.run_dir={tmp_path}"])
    Trainer(cfg)
    assert fake_gpus["init"] == [{"backend": "gloo", "timeout": datetime.timedelta(minutes=300)}]
    with pytest.raises(ConfigError, match=r"train.dist_timeout_min: 0.0 is out of range; must be > 0"):
        load_config(None, ["train.dist_timeout_min=0"])

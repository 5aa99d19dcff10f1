"""train.micro_batch_size: grad_accum derived from the global batch, the world size and the micro-batch; auto;
the memory model behind it (saved-for-backward bytes of the real objective, not timing); the one-line OOM."""

import pytest
import torch

from elfctl.config import config_from_dict, load_config
from elfctl.errors import ConfigError
from elfctl.train.micro_batch import StepMemory, divisors_desc, resolve, saved_bytes, step_memory

GB = 10**9


def test_grad_accum_is_derived_from_the_global_batch_world_size_and_micro_batch():
    assert resolve(8, 1, 512, 4, device_type="cuda").__dict__ == {"micro": 8, "grad_accum": 16,
                                                                 "how": "train.micro_batch_size"}
    assert (resolve(None, 4, 512, 2, device_type="cpu").micro, resolve(None, 4, 512, 2, device_type="cpu").grad_accum
            ) == (64, 4)  # unset: train.grad_accum as given
    cpu = resolve("auto", 1, 512, 2, device_type="cpu")
    assert (cpu.micro, cpu.grad_accum) == (256, 1)  # the CPU: the whole per-rank batch
    asked = []

    def fits(m):
        asked.append(m)
        return m <= 40

    gpu = resolve("auto", 1, 96, 1, device_type="cuda", fits=fits)
    assert (gpu.micro, gpu.grad_accum) == (32, 3) and asked == [96, 48, 32]  # largest divisor first
    assert divisors_desc(12) == [12, 6, 4, 3, 2, 1]
    with pytest.raises(ConfigError, match=r"^train.micro_batch_size: 48 does not divide the per-rank batch 128 "
                                          r"\(train.batch_size 512 / world size 4\); use one of 1, 2, 4, 8, 16, 32, "
                                          r"64, 128 or auto$"):
        resolve(48, 1, 512, 4, device_type="cuda")
    with pytest.raises(ConfigError, match="found no micro-batch that fits"):
        resolve("auto", 1, 8, 1, device_type="cuda", fits=lambda m: False)
    with pytest.raises(ConfigError, match="must be divisible by the world size"):
        resolve(None, 1, 10, 4, device_type="cpu")


def test_micro_batch_size_config_values():
    assert load_config("owt").train.micro_batch_size == "auto"  # the paper's batch 512 on any number of GPUs
    assert config_from_dict({"train": {"micro_batch_size": 16}}).train.micro_batch_size == 16
    with pytest.raises(ConfigError, match=r"^train.micro_batch_size: 'big' is not valid; give a number of examples "
                                          r">= 1, auto, or null$"):
        config_from_dict({"train": {"micro_batch_size": "big"}})
    with pytest.raises(ConfigError, match=r"^train.micro_batch_size: must be an integer or a word, got 1.5$"):
        config_from_dict({"train": {"micro_batch_size": 1.5}})
    with pytest.raises(ConfigError, match=r"^train.grad_accum: 2 given together with train.micro_batch_size \(8\)"):
        config_from_dict({"train": {"micro_batch_size": 8, "grad_accum": 2}})


def test_saved_bytes_by_hand():
    lin = torch.nn.Linear(3, 5)
    x = torch.randn(4, 3, requires_grad=False)
    # linear saves its input (4·3 floats) for the weight gradient; relu saves its output (4·5 floats); the weight
    # and bias are parameters (leaves that require grad) and are not counted
    assert saved_bytes(lambda: torch.relu(lin(x))) == (4 * 3 + 4 * 5) * 4
    with torch.no_grad():
        assert saved_bytes(lambda: torch.relu(lin(x))) == 0


def test_decode_rows_planned_at_the_binomial_tail():
    mem = StepMemory(static=0, per_example=1, per_decode_row=0, decoder_prob=0.2)
    assert mem.decode_rows(100) == 33  # 20 + 3.1 · 4 = 32.4 -> 33
    assert mem.decode_rows(1) == 1 and StepMemory(0, 1, 0, 0.0).decode_rows(64) == 0


@pytest.mark.slow
def test_elfctl_train_owt_resolves_a_micro_batch_that_fits_one_80gb_gpu():
    """The owt recipe (ELF-B, length 1024, global batch 512) on one 80 GB GPU, from the memory model: the micro-batch
    auto resolves to must fit with room to spare, and the global batch stays the paper's."""
    cfg = load_config("owt")
    mem = step_memory(cfg, latent_dim=512, vocab=32100)  # t5-small's width and vocabulary
    from elfctl.model import build_model

    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg.model, 512, 32100).parameters())
    # ELF-B, about 105M parameters: weights, gradients, EMA and two moments at 4 bytes, bf16 copies at 2
    assert 100e6 < params < 110e6 and mem.static == 22 * params
    # an example's saved activations at length 1024: a plausible size (each block saves several (1036, 768)
    # tensors; fp32) and the decode row's vocabulary logits (1024 × 32100 fp32 = 131 MB) at least once
    assert 0.5 * GB < mem.per_example < 4 * GB
    assert 1024 * 32100 * 4 <= mem.per_decode_row < 6 * 1024 * 32100 * 4
    budget = 0.9 * 80 * GB
    mb = resolve(cfg.train.micro_batch_size, cfg.train.grad_accum, cfg.train.batch_size, 1, device_type="cuda",
                 fits=lambda m: mem.bytes(m) <= budget)
    assert mb.micro * mb.grad_accum == cfg.train.batch_size == 512
    assert mem.bytes(mb.micro) <= budget < mem.bytes(2 * mb.micro)  # the largest power-of-two divisor that fits
    assert 4 <= mb.micro <= 128
    # the whole batch on one GPU is what the first user met: hundreds of GB
    assert mem.bytes(512) > 4 * 80 * GB


def test_cuda_out_of_memory_is_one_line_naming_the_setting(monkeypatch, capsys, tmp_path):
    from elfctl.cli import main
    from elfctl.train import trainer

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
                                     "of 79.1 GiB\nof which 1.2 GiB is free.")

    monkeypatch.setattr(trainer.Trainer, "run", oom)
    assert main(["train", "quickstart", f"train.run_dir={tmp_path / 'r'}"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: CUDA out of memory (CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                   "capacity of 79.1 GiB); lower train.micro_batch_size (examples per micro-step on each rank; "
                   "train.batch_size, the global batch, can stay)"]


def test_ranks_agree_on_the_smallest_probed_micro_batch(monkeypatch):
    """Ranks whose probes chose different micro-batches would accumulate different numbers of micro-steps and
    hang in DDP: they all take the smallest (a stand-in all-reduce: another rank chose 8)."""
    import torch.distributed as dist

    from elfctl.train.micro_batch import MicroBatch, agree

    def other_rank_chose_8(t, op=None):
        assert op == dist.ReduceOp.MIN
        t.fill_(min(int(t), 8))

    monkeypatch.setattr(dist, "all_reduce", other_rank_chose_8)
    got = agree(MicroBatch(32, 2, "auto: the largest that fit a probe"), 64, "cpu")
    assert (got.micro, got.grad_accum) == (8, 8) and got.how.endswith("; the smallest over the ranks")
    same = MicroBatch(4, 16, "auto")
    assert agree(same, 64, "cpu") is same

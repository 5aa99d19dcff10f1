"""Training length in epochs (train.epochs, optim.warmup_epochs) and the warm-up check; Muon's Newton–Schulz."""

import json
import sys
from pathlib import Path

import pytest
import torch

from elfctl.config import load_config
from elfctl.errors import ConfigError
from elfctl.train.length import resolve_length
from elfctl.train.optim import Fp32Muon, Optimizers, newton_schulz
from elfctl.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402


def test_epochs_resolve_to_ceil_of_epochs_times_examples_over_batch():
    cfg = load_config(None, ["train.steps=null", "train.epochs=3", "train.batch_size=64", "optim.warmup_epochs=0.5"])
    n = 9530  # 148.9 steps per epoch
    length = resolve_length(cfg.train, cfg.optim, n)
    assert (length.steps, length.warmup_steps) == (447, 75)  # ceil(446.7), ceil(74.45)
    assert "train.epochs 3 = 447 steps" in length.describe() and "warmup_epochs 0.5 = 75 steps" in length.describe()
    exact = resolve_length(load_config(None, ["train.steps=null", "train.epochs=2", "train.batch_size=10"]).train,
                           cfg.optim, 30)
    assert exact.steps == 6  # 2 × 30 / 10 exactly: no extra step
    steps = resolve_length(load_config(None, ["train.steps=12", "optim.warmup_steps=3"]).train,
                           load_config(None, ["optim.warmup_steps=3"]).optim, 100)
    assert (steps.steps, steps.warmup_steps, steps.epochs) == (12, 3, None)


@pytest.mark.parametrize("over, message", [
    (["train.epochs=4"], "train.epochs: given together with train.steps"),
    (["train.steps=null"], "train.steps: null, and no train.epochs"),
    (["optim.warmup_steps=10", "optim.warmup_epochs=0.5"], "optim.warmup_epochs: given together"),
])
def test_steps_and_epochs_together_or_neither_is_an_error(over, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, over)


def test_paper_recipes_say_their_length_as_the_authors_do():
    # epochs everywhere; warm-up half an epoch on OpenWebText, 5,000 steps for XSum and WMT14 (their configs)
    got = {r: (load_config(r).train.epochs, load_config(r).optim.warmup_epochs, load_config(r).optim.warmup_steps)
           for r in ("owt", "owt-elf-m", "owt-elf-l", "xsum", "wmt14-de-en")}
    assert got == {"owt": (5, 0.5, 0), "owt-elf-m": (4, 0.5, 0), "owt-elf-l": (3, 0.5, 0), "xsum": (100, None, 5000),
                   "wmt14-de-en": (100, None, 5000)}


def _cfg(tmp_path, *over):
    return load_config(None, ["train.batch_size=4", "train.log_every=1", "train.save_every=100", "data.max_length=6",
                              "model.depth=1", "model.hidden_size=16", "model.num_heads=2",
                              f"train.run_dir={tmp_path / 'r'}", *over])


def test_trainer_runs_the_resolved_steps_and_prints_them(tmp_path):
    lines = []
    # 48 synthetic examples at batch 4: 12 steps per epoch; 0.25 epochs = 3 steps, warm-up 0.1 epoch = 2 steps
    cfg = _cfg(tmp_path, "train.steps=null", "train.epochs=0.25", "optim.warmup_epochs=0.1", "optim.lr=0.01")
    res = Trainer(cfg, data_source=SyntheticData, log=lines.append).run()
    assert res.step == 3
    assert any("train.epochs 0.25 = 3 steps" in s and "warmup_epochs 0.1 = 2 steps" in s for s in lines)
    metrics = [json.loads(s) for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [m["lr"] for m in metrics] == pytest.approx([0.005, 0.01, 0.01])


def test_warmup_longer_than_the_run_warns_once(tmp_path):
    lines = []
    Trainer(_cfg(tmp_path, "train.steps=2", "optim.warmup_steps=50"), data_source=SyntheticData,
            log=lines.append).run()
    warned = [s for s in lines if s.startswith("warning: the warm-up (50 steps) is longer than the run (2 steps)")]
    assert len(warned) == 1


def test_newton_schulz_runs_in_fp32_as_the_authors_and_torch_muon_in_bf16():
    torch.manual_seed(0)
    g = torch.randn(24, 16)
    ref = newton_schulz(g.double(), eps=1e-8, dtype=torch.float64)
    ours = newton_schulz(g)
    assert ours.dtype == torch.float32 and (ours.double() - ref).abs().max() < 1e-5
    # One Muon step from zero momentum (lr 1): buffer (1 − m)·g, Nesterov update g.lerp(buffer, m), orthogonalised,
    # scaled by sqrt(max(1, fan_out / fan_in)); fp32 Newton–Schulz matches a float64 one, torch's bf16 does not.
    steps = {}
    for dtype in ("float32", "bfloat16"):
        w = torch.nn.Linear(16, 24)  # the bias goes to Nesterov-Adam
        w.weight.data.zero_()
        cfg = load_config(None, [f"optim.muon_ns_dtype={dtype}", "optim.weight_decay=0"])
        opt = Optimizers(cfg.optim, [w], lr=1.0, total_steps=1)
        assert isinstance(opt.optimizers[0], Fp32Muon) == (dtype == "float32")
        w.weight.grad = g.clone()
        opt.step()
        steps[dtype] = -w.weight.detach().double()
    m = 0.95
    expect = newton_schulz(g.lerp((1 - m) * g, m).double(), dtype=torch.float64) * (24 / 16) ** 0.5
    assert (steps["float32"] - expect).abs().max() < 1e-5
    assert (steps["bfloat16"] - expect).abs().max() > 1e-3  # bf16 rounding: what matching the authors removes


def test_the_length_line_prints_plain_numbers_and_right_plurals():
    """'1 warm-up steps' and '3.516e+04 steps per epoch' were printed; plain decimals and '1 warm-up step' now."""
    cfg = load_config(None, ["train.steps=12", "optim.warmup_steps=1", "train.batch_size=256"])
    line = resolve_length(cfg.train, cfg.optim, 9_000_000).describe()  # 35156.25 steps per epoch
    assert line == "training length: 12 steps (0.000341 epochs) at 35156 steps per epoch; 1 warm-up step", line
    cfg = load_config(None, ["train.steps=1", "optim.warmup_steps=0", "train.batch_size=4"])
    line = resolve_length(cfg.train, cfg.optim, 10).describe()
    assert line == "training length: 1 step (0.4 epochs) at 2.5 steps per epoch; 0 warm-up steps", line
    cfg = load_config(None, ["train.steps=null", "train.epochs=0.1", "optim.warmup_epochs=0.1", "train.batch_size=4"])
    line = resolve_length(cfg.train, cfg.optim, 10).describe()
    assert "train.epochs 0.1 = 1 step at" in line and "optim.warmup_epochs 0.1 = 1 step" in line, line

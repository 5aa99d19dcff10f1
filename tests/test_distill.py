"""Progressive distillation: the target, the schedule, the frozen teacher, round hand-offs, masking, resume.

Also a worker: ``python tests/test_distill.py TEACHER_DIR RUN_DIR [--round K] [overrides]`` runs the synthetic
distillation used by the resume test in a subprocess.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402

from elfctl.config import ObjectiveConfig, load_config, load_resolved  # noqa: E402
from elfctl.distill_objective import DistillObjective, student_x_target, sub_step_times  # noqa: E402
from elfctl.errors import ConfigError  # noqa: E402
from elfctl.flow import FlowPath  # noqa: E402
from elfctl.model import ELF  # noqa: E402
from elfctl.rundir import checkpoint as ckpt  # noqa: E402
from elfctl.train.distill import plan_rounds, round_config, round_lengths, run_distillation  # noqa: E402
from elfctl.train.trainer import Trainer  # noqa: E402

NET = ["data.max_length=6", "model.depth=1", "model.hidden_size=16", "model.num_heads=2", "train.batch_size=4",
       "train.log_every=1", "optim.ema_decay=0.5", "optim.warmup_steps=1"]
DISTILL = ["distill.rounds=[4,2,1]", "distill.teacher_steps=8", "distill.round_steps=3", "distill.warmup_fraction=0.5",
           "train.save_every=1",
           "optim.blr=0.05", "distill.samplers={4: {sc_cfg: 2.5}, 2: {sc_cfg: 2.5}, 1: {sc_cfg: 2.5, gamma: 0.0}}"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
QUIET = dict(log=lambda s: None)


def tiny_net(seed=0, C=8, V=23) -> ELF:
    torch.manual_seed(seed)
    net = ELF(C, V, depth=1, hidden_size=16, num_heads=2, bottleneck_dim=8, num_time_tokens=1, num_sc_cfg_tokens=1,
              num_mode_tokens=1)
    with torch.no_grad():  # the flow head starts at zero: give the teacher a non-trivial x̂
        net.flow_head.weight.normal_(0, 0.3)
    return net


def distill_cfg(teacher, run_dir, *over):
    return load_config(None, [*NET, *DISTILL, f"distill.teacher={teacher}", f"train.run_dir={run_dir}", *over])


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A synthetic teacher: 4 steps of ordinary training."""
    run = tmp_path_factory.mktemp("teacher")
    cfg = load_config(None, [*NET, "train.steps=4", "train.save_every=4", f"train.run_dir={run}"])
    Trainer(cfg, data_source=SyntheticData, **QUIET).run()
    return run


# --------------------------------------------------------------------------- the target

def test_one_student_euler_step_from_z_s_lands_on_the_teacher_endpoint():
    torch.manual_seed(0)
    B, L, C = 5, 3, 4
    t_s = torch.tensor([0.0, 0.1, 0.4, 0.7, 0.9])
    t_t = t_s + torch.tensor([0.05, 0.5, 0.25, 0.2, 0.04])
    z_s, z_end, x_last = torch.randn(B, L, C), torch.randn(B, L, C), torch.randn(B, L, C)
    x_tgt = student_x_target(z_s, z_end, t_s, t_t, x_last)
    # The student's sampler step: z + (t_t − t_s)·v̂ with v̂ = (x̂ − z)/max(1 − t_s, t_eps); every t_s < 0.95 here.
    path = FlowPath(noise_scale=2.0, t_eps=0.05)
    landed = z_s + (t_t - t_s).view(-1, 1, 1) * path.velocity(x_tgt, z_s, t_s)
    torch.testing.assert_close(landed, z_end, rtol=1e-5, atol=1e-5)


def test_tiny_span_falls_back_to_the_teachers_last_prediction():
    z_s, z_end, x_last = torch.zeros(2, 1, 2), torch.ones(2, 1, 2), torch.full((2, 1, 2), 7.0)
    t_s = torch.tensor([0.5, 0.5])
    t_t = torch.tensor([0.5 + 5e-4, 0.5 + 2e-3])  # below / above the 1e-3 threshold
    x = student_x_target(z_s, z_end, t_s, t_t, x_last)
    assert torch.equal(x[0], x_last[0])
    torch.testing.assert_close(x[1], torch.full((1, 2), 0.5 / 2e-3), rtol=1e-3, atol=0)  # z_s + (1 − t_s)/span·(z_end − z_s)


def test_teacher_target_is_k_euler_substeps_with_chained_self_conditioning():
    """The objective's target equals a hand-written float64 Euler loop over the drawn sub-step grid."""
    teacher = tiny_net(1)
    obj = DistillObjective(ObjectiveConfig(), teacher, student_steps=2, teacher_steps=8)  # K = 4
    torch.manual_seed(3)
    B, L, C = 3, 5, 8
    x = torch.randn(B, L, C)
    d = obj.draw(x)
    t_t = d.t_s + 0.5
    z_s = obj.path.interpolate(x, d.eps, d.t_s)
    sc = torch.randn(B, L, C)
    cond = torch.zeros(B, L, dtype=torch.bool)
    x_tgt, z_end = obj.teacher_target(z_s, d.t_s, t_t, d.sub_u, sc, d.sc_cfg, x, cond)

    times = sub_step_times(d.t_s, t_t, d.sub_u).double()
    z, x_sc = z_s.double(), sc
    with torch.no_grad():
        for k in range(4):
            t = times[:, k]
            x_hat = teacher(z.float(), t.float(), x_sc=x_sc, sc_cfg=d.sc_cfg)[0].double()
            z = z + (times[:, k + 1] - t).view(-1, 1, 1) * (x_hat - z) / (1 - t).clamp(min=0.05).view(-1, 1, 1)
            x_sc = x_hat.float()
    torch.testing.assert_close(z_end.double(), z, rtol=1e-4, atol=1e-4)
    expect = z_s.double() + ((1 - d.t_s.double()) / 0.5).view(-1, 1, 1) * (z - z_s.double())
    torch.testing.assert_close(x_tgt.double(), expect, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- schedule and grid

def test_round_schedule_of_the_released_curriculum(tmp_path):
    cfg = load_config(None, [f"train.run_dir={tmp_path}"])
    rounds = plan_rounds(cfg)
    assert [(r.index, r.student_steps, r.sub_steps) for r in rounds] == \
        [(1, 16, 4), (2, 8, 8), (3, 4, 16), (4, 2, 32), (5, 1, 64)]
    assert [r.run_dir.name for r in rounds] == ["round1-16step", "round2-8step", "round3-4step", "round4-2step",
                                                "round5-1step"]
    r4 = round_config(cfg, rounds[3], 50)
    # the student samples with the authors' 2-step settings by default; 10% warm-up; no dropout
    assert (r4.sample.steps, r4.sample.sampler, r4.sample.gamma, r4.sample.sc_cfg) == (2, "sde", 1.5, 2.5)
    assert (r4.train.steps, r4.optim.warmup_steps, r4.model.dropout) == (50, 5, 0.0)
    assert round_config(cfg, rounds[0], 50).sample.sc_cfg == 2.0  # 16 steps: gamma 2, SC-CFG 2


@pytest.mark.parametrize("over, words", [
    (["distill.rounds=[16,6]"], "does not divide"),
    (["distill.rounds=[4,8]"], "strictly decreasing"),
    (["distill.rounds=[]"], "non-empty"),
    (["distill.teacher_steps=128", "distill.rounds=[64]"], "no settings for 64-step"),
    (["distill.samplers={1: {gama: 1.0}}", "distill.rounds=[1]"], "did you mean 'gamma'"),
    (["distill.round_steps=5", "distill.round_epochs=1"], "not both"),
    (["distill.rounds=[2,1]", "distill.round_steps=[80,80,320]"], "has 3 entries but distill.rounds"),
    (["distill.rounds=[2,1]", "distill.round_steps=[80,0]"], "must be step counts >= 1"),
    (["distill.round_steps=0"], "must be step counts >= 1"),
    (["distill.round_steps=[80,true]", "distill.rounds=[2,1]"], "must be an integer"),
    (["distill.round_epochs=[1,-1]", "distill.rounds=[2,1]"], "must be epochs > 0"),
    (["distill.round_epochs=[1,.nan]", "distill.rounds=[2,1]"], "must be epochs > 0"),
])
def test_bad_distill_settings_fail_with_the_key(over, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, over)


def test_sub_step_grid_spans_the_student_step():
    obj = DistillObjective(ObjectiveConfig(), tiny_net(), student_steps=4, teacher_steps=64)  # K = 16
    torch.manual_seed(0)
    d = obj.draw(torch.zeros(200, 2, 8))
    assert d.sub_u.shape == (200, 15) and bool((d.sub_u.diff(dim=1) >= 0).all())
    assert bool((d.t_s >= 0).all()) and bool((d.t_s <= 0.75).all())
    times = sub_step_times(d.t_s, d.t_s + 0.25, d.sub_u)
    assert times.shape == (200, 17)
    torch.testing.assert_close(times[:, 0], d.t_s)
    torch.testing.assert_close(times[:, -1], d.t_s + 0.25)
    assert bool((times.diff(dim=1) >= 0).all()) and float(times.max()) <= 1.0 + 1e-6
    one = DistillObjective(ObjectiveConfig(), tiny_net(), student_steps=1, teacher_steps=64)
    assert float(one.draw(torch.zeros(50, 2, 8)).t_s.max()) <= 1e-6  # the one-step student starts at t ≈ 0


def test_round_lengths_are_one_number_for_every_round_or_one_per_round():
    def cfg(*over):
        return load_config(None, ["distill.rounds=[4,2,1]", "train.batch_size=10", *over])
    assert round_lengths(cfg("distill.round_steps=7")) == [7, 7, 7]
    assert round_lengths(cfg("distill.round_steps=[5,6,40]")) == [5, 6, 40]
    assert round_lengths(cfg(), num_examples=95) == [10, 10, 10]  # neither key: one epoch, rounded up
    assert round_lengths(cfg("distill.round_epochs=[0.5,1,2]"), num_examples=100) == [5, 10, 20]
    with pytest.raises(ValueError, match="training set"):
        round_lengths(cfg())


def test_distillation_recipes_validate_and_owt_pd_keeps_the_released_curriculum():
    owt = load_config("owt-pd")
    d = owt.distill
    assert (d.rounds, d.teacher_steps, d.round_epochs, d.warmup_fraction) == ([16, 8, 4, 2, 1], 64, 1.0, 0.1)
    assert (owt.optim.optimizer, owt.optim.ema_decay, owt.train.batch_size, owt.model.dropout) == \
        ("muon", 0.9999, 512, 0.0)
    assert d.samplers[1] == {"sampler": "sde", "gamma": 1.5, "sc_cfg": 2.5}
    assert d.samplers[32] == {"sampler": "sde", "gamma": 2.0, "sc_cfg": 2.0}
    quick = load_config("quickstart-pd")
    assert quick.distill.teacher == "runs/quickstart" and quick.distill.rounds[-1] == 1
    assert quick.model == load_config("quickstart").model  # the student is the teacher's network
    base = load_config("quickstart")
    # A smaller batch than the teacher's needs a smaller lr: batch 16 at the teacher's 2e-3 collapsed the student.
    assert quick.train.batch_size == base.train.batch_size or quick.optim.lr < base.optim.lr
    # The 1-step round, the hardest jump, is the longest (at 80 steps its student lost to the teacher at 1 step).
    lengths = round_lengths(quick)
    assert quick.distill.rounds == [2, 1] and lengths[-1] == max(lengths) > lengths[0]


# --------------------------------------------------------------------------- frozen teacher, masking

def _batch(B=4, L=5, C=8, V=23):
    torch.manual_seed(7)
    x = torch.randn(B, L, C)
    ids = torch.randint(0, V, (B, L))
    am = torch.ones(B, L, dtype=torch.bool)
    am[1, 3:] = False
    am[2, 1:] = False
    return x, ids, am, torch.zeros(B, L, dtype=torch.bool)


def test_teacher_is_frozen_in_eval_mode_and_unchanged_by_a_student_step():
    teacher, student = tiny_net(1), tiny_net(2)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    obj = DistillObjective(ObjectiveConfig(decoder_prob=0.3, self_cond_prob=0.5), teacher, student_steps=2,
                           teacher_steps=4)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    x, ids, am, cm = _batch()
    torch.manual_seed(0)
    out = obj(student, x, ids, am, cm)
    out.loss.backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in student.parameters())
    assert not teacher.training


class _FixedStudent(nn.Module):
    """Outputs a fixed x̂ (plus a learnable 0) and fixed logits: the loss is then known by hand."""

    def __init__(self, out, logits):
        super().__init__()
        self.out, self.logits, self.zero = out, logits, nn.Parameter(torch.zeros(()))

    def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, return_logits=None, logit_rows=None, **_):
        return self.out + self.zero, self.logits.index_select(0, logit_rows)


def test_loss_is_a_per_example_masked_mean_over_both_branches():
    x, ids, am, cm = _batch()
    B, L, C = x.shape
    obj = DistillObjective(ObjectiveConfig(), tiny_net(1), student_steps=2, teacher_steps=4)
    torch.manual_seed(0)
    d = obj.draw(x)
    d.decode_rows = torch.tensor([False, False, True, False])
    d.sc_rows = torch.tensor([False, True, False, False])
    torch.manual_seed(1)
    out, logits = torch.randn(B, L, C), torch.randn(B, L, 23)
    # the teacher's target on the distillation rows, as the objective builds it
    rows = torch.tensor([0, 1, 3])
    z_s = obj.path.interpolate(x, d.eps, d.t_s)
    x_sc = torch.zeros_like(x)
    x_sc[1] = obj._teacher_x(z_s[1:2], d.t_s[1:2], x_sc[1:2], d.sc_cfg[1:2], x[1:2], cm[1:2])[0]
    tgt, _ = obj.teacher_target(z_s[rows], d.t_s[rows], d.t_s[rows] + 0.5, d.sub_u[rows], x_sc[rows],
                                d.sc_cfg[rows], x[rows], cm[rows])
    per = []
    for j, r in enumerate(rows.tolist()):
        m = am[r]
        per.append(((out[r] - tgt[j]) ** 2).mean(-1)[m].mean())
    ce = torch.nn.functional.cross_entropy(logits[2][am[2]], ids[2][am[2]])
    expect = (per[0] + per[1] + ce + per[2]) / 4

    got = obj(_FixedStudent(out, logits), x, ids, am, cm, draws=d)
    torch.testing.assert_close(got.loss, expect, rtol=1e-5, atol=1e-6)
    # padded positions carry no loss: garbage there changes nothing
    spoiled = out.clone()
    spoiled[1, 3:] = 1e4
    spoiled[2] = 1e4  # a decode row: its flow output is never in the loss
    again = obj(_FixedStudent(spoiled, logits), x, ids, am, cm, draws=d)
    torch.testing.assert_close(again.loss, expect, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- rounds

def test_rounds_hand_over_ema_weights_with_fresh_optimiser_schedule_and_ema(teacher_run, tmp_path):
    run = tmp_path / "pd"
    run_distillation(distill_cfg(teacher_run, run), only_round=1, data_source=SyntheticData, **QUIET)
    r1, r2 = run / "round1-4step", run / "round2-2step"
    meta1 = json.loads((r1 / "distill_round.json").read_text())
    assert meta1["init_from"].endswith(":ema") and meta1["teacher_sub_steps"] == 2
    # Round 2 with EMA decay 1: its EMA never moves from the weights the round started from.
    run_distillation(distill_cfg(teacher_run, run, "optim.ema_decay=1.0"), only_round=2, data_source=SyntheticData,
                     **QUIET)
    c1, c2 = ckpt.latest_checkpoint(r1), ckpt.latest_checkpoint(r2)
    ema1, ema2, raw1 = ckpt.load_tensors(c1, "ema"), ckpt.load_tensors(c2, "ema"), ckpt.load_tensors(c1, "model")
    teacher = ckpt.load_tensors(ckpt.latest_checkpoint(teacher_run), "ema")
    assert all(torch.equal(ema1[k], ema2[k]) for k in ema1)  # round 2 started from round 1's EMA ...
    assert not all(torch.equal(raw1[k], ema2[k]) for k in raw1)  # ... not its raw weights
    assert not all(torch.equal(teacher[k], ema2[k]) for k in teacher)  # ... nor the teacher
    # Fresh optimiser and schedule in round 2: Adam's step count and the step numbering restart, warm-up again.
    opts = ckpt.load_train_state(c2)["optimizers"]
    assert {int(s["step"]) for o in opts for s in o["state"].values() if "step" in s} == {3}
    m2 = [json.loads(x) for x in (r2 / "metrics.jsonl").read_text().splitlines()]
    m1 = [json.loads(x) for x in (r1 / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in m2] == [1, 2, 3]
    assert m2[0]["lr"] == m1[0]["lr"] < m2[-1]["lr"]  # the same warm-up, started over
    # the round's run directory samples with the student's settings
    saved = load_resolved(r2 / "config.yaml")
    assert (saved.sample.steps, saved.sample.sc_cfg) == (2, 2.5)
    # and every round already run is skipped by the next command
    logs = []
    run_distillation(distill_cfg(teacher_run, run), only_round=2, data_source=SyntheticData, log=logs.append)
    assert any("done at step 3" in s for s in logs)


def test_rounds_of_different_lengths_each_run_their_own(teacher_run, tmp_path):
    run = tmp_path / "pd"
    cfg = distill_cfg(teacher_run, run, "distill.round_steps=[2,1,3]")
    run_distillation(cfg, only_round=1, data_source=SyntheticData, **QUIET)
    # round 2 is allowed: round 1 is finished at ITS length (2), though round 2's is 1 and round 3's is 3
    run_distillation(cfg, only_round=2, data_source=SyntheticData, **QUIET)
    with pytest.raises(ConfigError, match="round 2 .* is not finished"):  # round 2 ran 1 step; it needs 4 now
        run_distillation(distill_cfg(teacher_run, run, "distill.round_steps=[2,4,3]"), only_round=3,
                         data_source=SyntheticData, **QUIET)
    run_distillation(cfg, data_source=SyntheticData, **QUIET)
    steps = {r: int(ckpt.read_meta(ckpt.latest_checkpoint(run / r))["step"])
             for r in ("round1-4step", "round2-2step", "round3-1step")}
    assert steps == {"round1-4step": 2, "round2-2step": 1, "round3-1step": 3}
    assert load_resolved(run / "round3-1step" / "config.yaml").train.steps == 3


def test_a_round_needs_the_one_before_it(teacher_run, tmp_path):
    with pytest.raises(ConfigError, match="round 1 .* is not finished"):
        run_distillation(distill_cfg(teacher_run, tmp_path / "pd"), only_round=2, data_source=SyntheticData, **QUIET)
    with pytest.raises(ConfigError, match="distill.teacher"):
        run_distillation(distill_cfg(tmp_path / "nope", tmp_path / "pd"), data_source=SyntheticData, **QUIET)
    with pytest.raises(ConfigError, match="model.hidden_size"):
        run_distillation(distill_cfg(teacher_run, tmp_path / "pd", "model.hidden_size=32"),
                         data_source=SyntheticData, **QUIET)


def _losses(run_dir: Path) -> dict:
    out = {}
    for rnd in sorted(run_dir.glob("round*")):
        path = rnd / "metrics.jsonl"
        if path.is_file():
            for m in map(json.loads, path.read_text().splitlines()):
                out[(rnd.name, m["step"])] = m["loss"]
    return out


def test_sigkill_mid_round_then_the_same_command_resumes_exactly(teacher_run, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    cmd = lambda run: [sys.executable, __file__, str(teacher_run), str(run)]  # noqa: E731
    subprocess.run(cmd(ref), check=True, env=ENV, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd(cut), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ("round2-2step", 2) in _losses(cut):  # killed inside round 2, after its step-2 checkpoint began
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ("round3-1step", 3) not in _losses(cut), "the distillation finished before it could be killed"
    subprocess.run(cmd(cut), check=True, env=ENV, capture_output=True, timeout=300)
    a, b = _losses(ref), _losses(cut)
    assert len(a) == 9 and a == b  # three rounds of three steps, bit for bit
    for name in ("round1-4step", "round3-1step"):
        ta = ckpt.load_tensors(ckpt.latest_checkpoint(ref / name), "ema")
        tb = ckpt.load_tensors(ckpt.latest_checkpoint(cut / name), "ema")
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


if __name__ == "__main__":
    teacher_dir, run_dir, *over = sys.argv[1:]
    run_distillation(distill_cfg(teacher_dir, run_dir, *over), data_source=SyntheticData)


# --------------------------------------------------------------------------- the round's loss trend

def _round_with_l2(tmp_path, values):
    from elfctl.train.distill import Round

    rnd = Round(1, 8, 2, tmp_path / "round1-8step")
    rnd.run_dir.mkdir()
    rows = [{"step": 10 * (i + 1), "loss": 1.0, "l2": v, "ce": 5.0} for i, v in enumerate(values)]
    rows.insert(2, {"step": 25, "event": "resume"})  # rows without l2 are skipped
    (rnd.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rnd


def _empty_round(tmp_path):
    from elfctl.train.distill import Round

    (tmp_path / "empty").mkdir()
    return Round(1, 8, 2, tmp_path / "empty")


def test_round_loss_trend_averages_the_first_and_last_quarter(tmp_path):
    from elfctl.train.distill import round_loss_trend

    rnd = _round_with_l2(tmp_path, [0.001, 0.003, 0.010, 0.011, 0.020, 0.030, 0.025, 0.027])
    start, end = round_loss_trend(rnd.run_dir)  # quarters of 8 logged steps: the first two, the last two
    assert start == pytest.approx(0.002) and end == pytest.approx(0.026)
    few = tmp_path / "few"
    few.mkdir()
    assert round_loss_trend(_round_with_l2(few, [0.1, 0.2, 0.3]).run_dir) is None  # too few logged steps


def test_each_round_reports_where_its_distillation_loss_started_and_ended(tmp_path):
    from elfctl.train.distill import report_round_trend

    lines = []
    report_round_trend(_round_with_l2(tmp_path, [0.0016, 0.0039, 0.0052, 0.0069, 0.0069, 0.0095, 0.0099, 0.0101]),
                       lines.append)
    assert lines == ["round 1 (8-step student, 2 teacher sub-steps): distillation loss (x-space L2) 0.00275 over "
                     "the first quarter of the round, 0.01 over the last"]
    lines.clear()
    report_round_trend(_empty_round(tmp_path), lines.append)
    assert lines == []  # nothing logged yet (a round that stopped before its first log step): no line


def test_train_compile_compiles_the_teachers_blocks_once_for_every_round(teacher_run, tmp_path, monkeypatch):
    """The teacher's K sub-steps run through compiled blocks under train.compile, like the student's; compiled
    once (the teacher is shared by the rounds). Dynamo's eager backend here: the tracing, without a C++ build."""
    from elfctl.train import compiled, distill, trainer
    from elfctl.train.compiled import is_compiled

    calls = []

    def eager(model, **kw):
        calls.append(model)
        return compiled.compile_blocks(model, backend="eager")

    monkeypatch.setattr(distill, "compile_blocks", eager)
    monkeypatch.setattr(trainer, "compile_blocks", eager)
    torch._dynamo.reset()
    try:
        run = tmp_path / "pd"
        logs = []
        run_distillation(distill_cfg(teacher_run, run, "train.compile=true"), data_source=SyntheticData,
                         log=logs.append)
        # round 1: the teacher (built with the objective), then its student; rounds 2 and 3: their students only
        teacher = calls[0]
        assert len(calls) == 4 and sum(m is teacher for m in calls) == 1
        assert all(is_compiled(b) for m in calls for b in m.blocks)
        for r in ("round1-4step", "round2-2step", "round3-1step"):
            losses = [json.loads(x)["loss"] for x in (run / r / "metrics.jsonl").read_text().splitlines()]
            assert losses and all(math.isfinite(v) for v in losses)
    finally:
        torch._dynamo.reset()


def test_a_changed_distillation_says_pass_new_and_distill_has_it(teacher_run, tmp_path, capsys):
    """The refusal tells the user to pass --new; `elfctl distill` has that flag (it did not) and it starts the
    rounds in a new directory beside the old one, which stays as it was."""
    run = tmp_path / "pd"
    run_distillation(distill_cfg(teacher_run, run), only_round=1, data_source=SyntheticData, **QUIET)
    changed = distill_cfg(teacher_run, run, "distill.round_steps=[5,3,3]", "optim.blr=0.02")
    with pytest.raises(ConfigError, match="pass --new") as e:
        run_distillation(changed, only_round=1, data_source=SyntheticData, **QUIET)
    assert "optim.blr" in str(e.value)
    before = sorted(p.name for p in (run / "round1-4step" / "checkpoints").iterdir())
    dirs = run_distillation(changed, only_round=1, new=True, data_source=SyntheticData, **QUIET)
    assert dirs[0] == tmp_path / "pd-2" / "round1-4step"
    assert int(ckpt.read_meta(ckpt.latest_checkpoint(dirs[0]))["step"]) == 5
    assert sorted(p.name for p in (run / "round1-4step" / "checkpoints").iterdir()) == before
    from elfctl.cli import main

    capsys.readouterr()
    assert main(["distill", "--help"]) == 0
    assert "--new" in capsys.readouterr().out


def test_round_lines_say_1_step_and_1_sub_step():
    """'1 steps from' and '1 teacher sub-steps' were printed (as '1 warm-up steps' in the length line)."""
    from elfctl.train.distill import Round

    assert Round(2, 1, 1, Path("r")).name == "round 2 (1-step student, 1 teacher sub-step)"
    assert Round(1, 8, 2, Path("r")).name == "round 1 (8-step student, 2 teacher sub-steps)"


def test_a_list_of_round_lengths_loads_whatever_union_python_cached_first():
    """`Optional[int | list[int]]` written by any module imported before (typing caches equal unions) made
    `Optional[list[int] | int]` read as int first: 'distill.round_steps: must be an integer, got [80, 320]'."""
    code = ("from typing import Optional\nOptional[int | list[int]]\nOptional[float | list[float]]\n"
            "from elfctl.config import load_config\n"
            "cfg = load_config('quickstart-pd', ['distill.round_epochs=null'])\n"
            "print(cfg.distill.round_steps, load_config(None, ['distill.rounds=[2,1]', "
            "'distill.round_epochs=[0.5,2]']).distill.round_epochs)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[80,", "320]", "[0.5,", "2.0]"]

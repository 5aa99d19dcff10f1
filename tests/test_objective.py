"""The training objective against hand-computed values (ELF-METHOD §3)."""

import math

import pytest
import torch
import torch.nn as nn

from elfctl.config import load_config
from elfctl.model import ELF
from elfctl.objective import Draws, ElfObjective


class StubNet(nn.Module):
    """x̂ = a + b·x_sc everywhere; decode logits fixed to [0, ln 3]. Records every call."""

    def __init__(self, a=0.0, b=0.0):
        super().__init__()
        self.a, self.b = a, b
        self.calls = []

    def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, key_mask=None, return_logits=None,
                logit_rows=None):
        self.calls.append(dict(z=z.clone(), t=t.clone(), x_sc=None if x_sc is None else x_sc.clone(),
                               sc_cfg=sc_cfg, decode=decode))
        x_sc = torch.zeros_like(z) if x_sc is None else x_sc
        out = self.a + self.b * x_sc
        rows = z.shape[0] if logit_rows is None else len(logit_rows)
        logits = torch.tensor([0.0, math.log(3.0)]).expand(rows, z.shape[1], 2) if return_logits else None
        return out, logits


def objective(**over):
    cfg = load_config(None, [f"objective.{k}={v}" for k, v in over.items()])
    return ElfObjective(cfg.objective, use_sc_cfg=False)


def draws(B, L, C, *, t, eps=1.0, decode=(), sc=(), w=None, lam=0.5, eps_dec=0.0):
    return Draws(t=torch.tensor(t), eps=torch.full((B, L, C), eps), decode_rows=torch.tensor(
        [i in decode for i in range(B)]), lam=torch.full((B, L, 1), lam), eps_dec=torch.full((B, L, C), eps_dec),
        sc_rows=torch.tensor([i in sc for i in range(B)]), sc_cfg=None if w is None else torch.tensor(w))


def test_loss_equals_hand_computed_value_for_one_denoise_and_one_decode_row():
    # Row 0 denoises: x = 1, t = 0.5, eps = 1, s = 2 -> z = 0.5 + 0.5*2 = 1.5; x̂ = 0 ->
    #   v̂ = (0 - 1.5)/0.5 = -3, v = (1 - 1.5)/0.5 = -1, L2 = 4.
    # Row 1 decodes: logits [0, ln 3], target 0 -> CE = ln 4.  Loss = (4 + ln 4) / 2 positions.
    obj = objective(noise_scale=2.0, t_eps=0.05, self_cond_prob=0.0)
    x = torch.ones(2, 1, 1)
    ids = torch.zeros(2, 1, dtype=torch.long)
    am = torch.ones(2, 1, dtype=torch.bool)
    cm = torch.zeros(2, 1, dtype=torch.bool)
    out = obj(StubNet(), x, ids, am, cm, draws=draws(2, 1, 1, t=[0.5, 0.3], decode=(1,)))
    assert math.isclose(out.loss.item(), (4 + math.log(4)) / 2, rel_tol=1e-6)
    assert math.isclose(out.l2.item(), 4.0, rel_tol=1e-6)
    assert math.isclose(out.ce.item(), math.log(4), rel_tol=1e-6)


def test_decode_branch_input_is_the_per_token_corruption_at_time_one_with_gate_on():
    obj = objective(decoder_noise_scale=5.0, self_cond_prob=0.0)
    net = StubNet()
    x = torch.full((1, 2, 1), 2.0)
    obj(net, x, torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool),
        torch.zeros(1, 2, dtype=torch.bool), draws=draws(1, 2, 1, t=[0.2], decode=(0,), lam=0.25, eps_dec=1.0))
    call = net.calls[-1]
    # z_dec = λ x + (1 − λ) s_dec ε = 0.25*2 + 0.75*5*1 = 4.25
    assert torch.allclose(call["z"], torch.full((1, 2, 1), 4.25))
    assert call["t"].tolist() == [1.0]
    assert call["decode"].tolist() == [1.0]
    assert torch.equal(call["x_sc"], torch.zeros(1, 2, 1))


def test_sc_cfg_target_matches_hand_computation():
    # x̂ = a + b·x_sc with a = 0.5, b = 2; x = 1, t = 0.5, eps = 1 -> z = 1.5, d = 0.5, v = -1.
    # first pass (x_sc = 0): x̂_u = 0.5, v_u = -2; conditional pass (x_sc = 0.5): x̂_c = 1.5, v_c = 0.
    # target = v + (1 - 1/w)(v_c - v_u) = -1 + 0.75*2 = 0.5 (w = 4); trained pass: x̂ = 1.5, v̂ = 0 -> L2 = 0.25.
    cfg = load_config(None, ["objective.self_cond_prob=1.0"])
    obj = ElfObjective(cfg.objective, use_sc_cfg=True)
    net = StubNet(a=0.5, b=2.0)
    out = obj(net, torch.ones(1, 1, 1), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool),
              torch.zeros(1, 1, dtype=torch.bool), draws=draws(1, 1, 1, t=[0.5], sc=(0,), w=[4.0]))
    assert math.isclose(out.l2.item(), 0.25, rel_tol=1e-6)
    assert len(net.calls) == 3  # first pass, conditional pass, trained pass
    assert torch.allclose(net.calls[-1]["x_sc"], torch.full((1, 1, 1), 0.5))


def test_condition_positions_get_no_noise_and_no_loss():
    obj = objective(self_cond_prob=0.0)
    net = StubNet()
    x = torch.arange(6.0).view(1, 3, 2)
    cm = torch.tensor([[True, True, False]])
    ids = torch.zeros(1, 3, dtype=torch.long)
    out = obj(net, x, ids, torch.ones(1, 3, dtype=torch.bool), cm, draws=draws(1, 3, 2, t=[0.3], eps=7.0))
    z = net.calls[-1]["z"]
    assert torch.equal(z[0, :2], x[0, :2])                  # condition kept clean
    assert not torch.equal(z[0, 2], x[0, 2])                # target noised
    assert out.n_positions.item() == 1                      # only the target position carries loss
    # The L2 of the one target position alone, by hand: z = 0.3 x + 0.7*2*7, v̂ = (0 - z)/0.7, v = (x - z)/0.7.
    zt = 0.3 * x[0, 2] + 0.7 * 2 * 7
    expect = (((0 - zt) / 0.7 - (x[0, 2] - zt) / 0.7) ** 2).mean()
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-6)


def test_label_drop_zeroes_condition_latents():
    obj = objective(self_cond_prob=0.0)
    net = StubNet()
    x = torch.ones(2, 2, 1)
    cm = torch.tensor([[True, False], [True, False]])
    obj(net, x, torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.bool), cm,
        draws=draws(2, 2, 1, t=[0.5, 0.5]), drop_cond=torch.tensor([True, False]))
    z = net.calls[-1]["z"]
    assert z[0, 0, 0].item() == 0.0 and z[1, 0, 0].item() == 1.0


def _grads(decoder_prob):
    torch.manual_seed(0)
    cfg = load_config(None, [f"objective.decoder_prob={decoder_prob}"])
    model = ELF(8, 13, depth=2, hidden_size=16, num_heads=2)
    nn.init.normal_(model.flow_head.weight, std=0.1)  # so the flow head has a gradient path at all
    obj = ElfObjective(cfg.objective)
    x = torch.randn(4, 5, 8)
    ids = torch.randint(0, 13, (4, 5))
    out = obj(model, x, ids, torch.ones(4, 5, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.bool))
    out.loss.backward()
    return out, model


def test_decoder_prob_zero_trains_only_the_denoiser():
    out, model = _grads(0.0)
    assert out.ce.item() == 0.0 and out.l2.item() > 0
    assert model.unembed.weight.grad.abs().max().item() == 0.0
    assert model.flow_head.weight.grad.abs().max().item() > 0.0


def test_decoder_prob_one_trains_only_the_decoder():
    out, model = _grads(1.0)
    assert out.l2.item() == 0.0 and out.ce.item() > 0
    assert model.flow_head.weight.grad.abs().max().item() == 0.0
    assert model.unembed.weight.grad.abs().max().item() > 0.0


def test_v_prediction_uses_network_output_as_velocity():
    cfg = load_config(None, ["objective.self_cond_prob=0.0"])
    obj = ElfObjective(cfg.objective, prediction="v", use_sc_cfg=False)
    # x = 1, t = 0.5, eps = 1, s = 2 -> z = 1.5, v = -1; v̂ = 0 -> L2 = 1.
    out = obj(StubNet(), torch.ones(1, 1, 1), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool),
              torch.zeros(1, 1, dtype=torch.bool), draws=draws(1, 1, 1, t=[0.5]))
    assert math.isclose(out.loss.item(), 1.0, rel_tol=1e-6)


def test_decode_rows_get_an_all_zero_self_conditioning_half_condition_positions_included():
    # Row 0 decodes, row 1 denoises without self-conditioning, row 2 denoises with it. Condition: position 0.
    # Decode row: x_sc zero everywhere (the authors' code, and the sampler's decode pass). Denoise rows: the clean
    # condition latent x at the condition position, zero (row 1) or the first pass's x̂ (row 2: a = 0.5) elsewhere.
    obj = objective(self_cond_prob=0.5)
    net = StubNet(a=0.5)
    x = torch.full((3, 2, 1), 3.0)
    cm = torch.tensor([[True, False]] * 3)
    obj(net, x, torch.zeros(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.bool), cm,
        draws=draws(3, 2, 1, t=[0.5, 0.5, 0.5], decode=(0,), sc=(0, 2)))
    x_sc = net.calls[-1]["x_sc"][..., 0]
    assert x_sc.tolist() == [[0.0, 0.0], [3.0, 0.0], [3.0, 0.5]]
    assert net.calls[-1]["decode"].tolist() == [1.0, 0.0, 0.0]


def test_branch_draws_live_on_the_cpu_and_keep_the_cpu_stream():
    # The per-row masks are drawn on the CPU (no device sync to pick rows); on a CPU run the draws are the
    # same numbers, in the same order, as drawing everything from one generator.
    obj = objective(decoder_prob=0.5, self_cond_prob=0.5)
    torch.manual_seed(3)
    d = obj.draw(torch.zeros(6, 2, 1))
    torch.manual_seed(3)
    torch.sigmoid(torch.randn(6) * 0.8 - 1.5)   # t
    torch.randn(6, 2, 1)                          # eps
    dec = torch.rand(6) < 0.5
    torch.randn(6, 2, 1)                          # lam
    torch.randn(6, 2, 1)                          # eps_dec
    sc = torch.rand(6) < 0.5
    assert d.decode_rows.device.type == "cpu" and d.sc_rows.device.type == "cpu"
    assert torch.equal(d.decode_rows, dec) and torch.equal(d.sc_rows, sc)


def test_training_passes_no_key_mask_to_the_network_as_sampling_does(tmp_path, monkeypatch):
    # Today's sampler attends over every position (it cannot know where generated text ends); training on data
    # with padding (pad_token: pad) must do the same, in every pass of the objective.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import SyntheticData
    from elfctl.train.trainer import Trainer

    class PaddedData(SyntheticData):
        def __init__(self, cfg, run_dir, device):
            super().__init__(cfg, run_dir, device, n=8)
            for it in self.dataset:
                it["attention_mask"][3:] = False  # 3 real tokens, then padding

    seen = []
    forward = ELF.forward

    def recording(self, z, t, **kw):
        seen.append(kw.get("key_mask"))
        return forward(self, z, t, **kw)

    monkeypatch.setattr(ELF, "forward", recording)
    cfg = load_config(None, ["train.steps=2", "train.batch_size=4", "train.save_every=2", "data.max_length=6",
                             "data.pad_token=pad", "model.depth=1", "model.hidden_size=16", "model.num_heads=2",
                             "objective.self_cond_prob=1.0", "objective.decoder_prob=0.5",
                             f"train.run_dir={tmp_path / 'r'}"])
    Trainer(cfg, data_source=PaddedData, log=lambda s: None).run()
    assert len(seen) >= 4 and all(m is None for m in seen)


def test_from_config_reads_prediction_sc_cfg_tokens_and_pad_token():
    cfg = load_config(None, ["model.prediction=v", "model.num_sc_cfg_tokens=0", "data.pad_token=eos",
                             "objective.noise_scale=3.0", "objective.t_eps=0.1"])
    obj = ElfObjective.from_config(cfg)
    assert (obj.path.prediction, obj.path.noise_scale, obj.path.t_eps) == ("v", 3.0, 0.1)
    assert obj.use_sc_cfg is False and obj.pad_token == "eos" and obj.cfg is cfg.objective


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: checks that a loss never syncs with the host")
def test_a_cuda_loss_with_every_branch_makes_no_host_device_sync():
    class DeviceStub(nn.Module):  # x̂ = 0.5 + x_sc, logits from the input: no sync of its own
        def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, return_logits=None, logit_rows=None):
            out = 0.5 + (torch.zeros_like(z) if x_sc is None else x_sc)
            logits = z.index_select(0, logit_rows)[..., :2] if return_logits else None
            return out, logits

    dev = torch.device("cuda")
    cfg = load_config(None, ["objective.decoder_prob=0.5", "objective.self_cond_prob=0.5"])
    obj = ElfObjective(cfg.objective, use_sc_cfg=True)
    x = torch.randn(8, 3, 4, device=dev)
    ids = torch.zeros(8, 3, dtype=torch.long, device=dev)
    masks = torch.ones(8, 3, dtype=torch.bool, device=dev), torch.zeros(8, 3, dtype=torch.bool, device=dev)
    torch.manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = obj(DeviceStub(), x, ids, *masks, drop_cond=torch.zeros(8, dtype=torch.bool).to(dev, non_blocking=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss).item()

"""The sampler against hand computations, with stub networks that record every call (ELF-METHOD §4)."""

import math

import pytest
import torch
import torch.nn as nn

from elfctl.flow import FlowPath
from elfctl.model import ELF
from elfctl.sampling.sampler import Condition, EulerSampler, SamplerSettings


class Stub(nn.Module):
    """x̂ = const + k·x_sc; decode logits = one-hot of token 3. Records (batch, t, x_sc, sc_cfg)."""

    def __init__(self, const=0.5, k=0.0, vocab=7):
        super().__init__()
        self.const, self.k, self.vocab = const, k, vocab
        self.calls = []

    def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, key_mask=None, return_logits=None,
                logit_rows=None):
        self.calls.append({"B": z.shape[0], "t": t.clone(), "x_sc": x_sc.clone(), "z": z.clone(), "decode": decode,
                           "sc_cfg": sc_cfg.clone()})
        out = torch.full_like(z, self.const) + self.k * x_sc
        logits = None
        if decode:
            logits = torch.zeros(*z.shape[:2], self.vocab)
            logits[..., 3] = 1.0
        return out, logits


def run(stub, settings, *, B=2, L=3, C=2, seed=0, cond=None):
    s = EulerSampler(stub, FlowPath(settings.noise_scale, settings.t_eps), settings)
    return s.sample(B, L, C, seed=seed, device=torch.device("cpu"), cond=cond)


def test_one_ode_step_by_hand():
    # One step from t=0 to 1 (uniform grid): z1 = z0 + 1·(x̂ − z0)/max(1 − 0, t_eps) = x̂.
    stub = Stub(const=0.5)
    res = run(stub, SamplerSettings(steps=1, sampler="ode", time_grid="uniform"))
    assert torch.allclose(res.z, torch.full((2, 3, 2), 0.5))
    assert res.token_ids.eq(3).all()


def test_two_ode_steps_by_hand():
    # grid 0, .5, 1; z0 = 2ε. Step 1: z = z0 + .5(x̂ − z0) = .5 z0 + .25. Step 2 (t=.5): z = z + .5(x̂ − z)/.5 = x̂.
    stub = Stub(const=0.5)
    res = run(stub, SamplerSettings(steps=2, sampler="ode", time_grid="uniform"))
    z_mid = stub.calls[1]["z"]
    z0 = stub.calls[0]["z"]
    assert torch.allclose(z_mid, 0.5 * z0 + 0.25)
    assert torch.allclose(res.z, torch.full_like(res.z, 0.5))


def test_sde_with_gamma_zero_equals_ode():
    a = run(Stub(const=0.2, k=0.5), SamplerSettings(steps=6, sampler="sde", gamma=0.0))
    b = run(Stub(const=0.2, k=0.5), SamplerSettings(steps=6, sampler="ode"))
    assert torch.equal(a.z, b.z)


def test_sde_churns_back_in_time_except_on_the_last_step():
    stub = Stub()
    s = SamplerSettings(steps=4, sampler="sde", gamma=1.5, time_grid="uniform")
    run(stub, s)
    ts = [c["t"][0].item() for c in stub.calls[:-1]]  # the last call is the decode
    grid = [0.0, 0.25, 0.5, 0.75]
    for i, (t, g) in enumerate(zip(ts[:-1], grid[:-1])):
        alpha = min(max(1 - 1.5 * 0.25, 0.0), 1.0)
        assert t == pytest.approx(alpha * g)  # t_b = α·t
    assert ts[-1] == pytest.approx(0.75)       # last step: plain ODE from t_{N-1}
    assert stub.calls[-1]["t"][0].item() == 1.0 and stub.calls[-1]["decode"] is True


def test_self_conditioning_is_chained():
    stub = Stub(const=0.3, k=0.5)
    run(stub, SamplerSettings(steps=3, sampler="ode", time_grid="uniform"))
    assert torch.equal(stub.calls[0]["x_sc"], torch.zeros(2, 3, 2))
    for prev, nxt in zip(stub.calls[:2], stub.calls[1:3]):
        x_hat_prev = stub.const + stub.k * prev["x_sc"]
        assert torch.allclose(nxt["x_sc"], x_hat_prev)
    assert torch.equal(stub.calls[-1]["x_sc"], torch.zeros(2, 3, 2))  # decode: zero self-conditioning


def test_sc_cfg_scale_reaches_the_tokens():
    stub = Stub()
    run(stub, SamplerSettings(steps=2, sc_cfg=3.0))
    assert all(torch.all(c["sc_cfg"] == 3.0) for c in stub.calls)


class CondStub(Stub):
    """x̂ = 1 where the row's condition latents are present (z at pos 0 is nonzero), else −1."""

    def forward(self, z, t, **kw):
        out, logits = super().forward(z, t, **kw)
        has_cond = (z[:, :1].abs().sum(-1, keepdim=True) > 0).float()
        return has_cond * 2 - 1 + 0 * out, logits


def _cond(B=2, L=3, C=2):
    lat = torch.zeros(B, L, C)
    lat[:, 0] = 7.0
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 0] = True
    return Condition(lat, mask, guided=True)


def test_cfg_is_one_batched_forward_and_combines_x_u_plus_w_times_difference():
    stub = CondStub()
    res = run(stub, SamplerSettings(steps=1, sampler="ode", time_grid="uniform", cfg=2.5), cond=_cond())
    first = stub.calls[0]
    assert first["B"] == 4                                # conditional + unconditional rows in one call
    assert torch.all(first["z"][2:, 0] == 0) and torch.all(first["z"][:2, 0] == 7.0)
    # one step 0 → 1 lands on x̂ = x_u + w(x_c − x_u) = −1 + 2.5·2 = 4 at free positions; condition pinned
    assert torch.allclose(res.z[:, 1:], torch.full((2, 2, 2), 4.0))
    assert torch.all(res.z[:, 0] == 7.0)
    assert res.rows == 4 + 2 and res.nfe == 2            # one 2B denoise pass + a B-row decode


def test_cfg_scale_one_skips_the_unconditional_pass():
    stub = CondStub()
    run(stub, SamplerSettings(steps=3, cfg=1.0), cond=_cond())
    assert all(c["B"] == 2 for c in stub.calls)


def test_condition_positions_stay_exactly_clean_through_sde_steps():
    stub = Stub(const=0.1, k=0.3)
    res = run(stub, SamplerSettings(steps=5, sampler="sde", gamma=2.0), cond=_cond())
    for c in stub.calls[:-1]:
        assert torch.all(c["z"][:, 0] == 7.0) and torch.all(c["x_sc"][:, 0] == 7.0)
    assert torch.all(res.z[:, 0] == 7.0)


def test_same_seed_same_samples_different_seed_different():
    torch.manual_seed(0)
    model = ELF(8, 11, depth=1, hidden_size=16, num_heads=2).eval()
    nn.init.normal_(model.flow_head.weight, std=0.3)
    s = SamplerSettings(steps=4, sampler="sde", gamma=1.5)
    a = run(model, s, seed=5, C=8)
    b = run(model, s, seed=5, C=8)
    c = run(model, s, seed=6, C=8)
    assert torch.equal(a.z, b.z) and torch.equal(a.token_ids, b.token_ids)
    assert not torch.equal(a.z, c.z)


def test_trajectory_records_requested_steps():
    s = EulerSampler(Stub(), FlowPath(), SamplerSettings(steps=4))
    res = s.sample(1, 3, 2, seed=0, device=torch.device("cpu"), trajectory_steps=(0, 3))
    assert [k for k, _ in res.trajectory] == [0, 3]
    assert math.isfinite(res.z.sum().item())

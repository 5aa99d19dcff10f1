"""The sampler against hand computations, with stub networks that record every call (ELF-METHOD §4).

No tokenizer: everything here is token ids out of a stub decode head or a tiny ELF built in code.
"""

import pytest
import torch
import torch.nn as nn

from elfctl.kernels import ops as kernels
from elfctl.errors import ElfRuntimeError
from elfctl.flow import FlowPath, time_grid
from elfctl.model import ELF
from elfctl.sampling.sampler import Condition, EulerSampler, SamplerSettings, mix_seed, sample

CPU = torch.device("cpu")


class Stub(nn.Module):
    """Flow head: x̂ = const + k·x_sc; decode logits = one-hot of token 3. Records every call."""

    latent_dim = 2

    def __init__(self, const=0.5, k=0.0, vocab=7):
        super().__init__()
        self.const, self.k, self.vocab = const, k, vocab
        self.calls = []

    def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, key_mask=None, return_logits=None):
        self.calls.append({"B": z.shape[0], "t": t.clone(), "x_sc": x_sc.clone(), "z": z.clone(), "decode": decode,
                           "sc_cfg": sc_cfg.clone(), "key_mask": key_mask})
        out = torch.full_like(z, self.const) + self.k * x_sc
        logits = None
        if decode:
            logits = torch.zeros(*z.shape[:2], self.vocab)
            logits[..., 3] = 1.0
        return out, logits


def run(model, settings, *, B=2, L=3, C=2, seed=0, cond=None, prediction="x", trajectory=(), t_eps=0.05):
    s = EulerSampler(model, FlowPath(2.0, t_eps, prediction), settings)
    return s.sample(B, L, C, seed=seed, device=CPU, cond=cond, trajectory_steps=trajectory)


def denoise_calls(stub):
    return [c for c in stub.calls if not c["decode"]]


# ---------------------------------------------------------------------------------------------- the step math
def test_one_ode_step_by_hand():
    # One step 0 → 1: v = (x̂ − z0)/max(1 − 0, t_eps), z1 = z0 + 1·v = x̂.
    stub = Stub(const=0.5)
    res = run(stub, SamplerSettings(steps=1, sampler="ode", time_grid="uniform"))
    assert torch.allclose(res.z, torch.full((2, 3, 2), 0.5))
    assert res.token_ids.eq(3).all() and res.ids is res.token_ids and res.x_final is res.z
    assert res.nfe == 2 and res.rows == 4  # one denoise + one decode, B rows each


def test_two_ode_steps_by_hand():
    # grid 0, .5, 1; z0 = 2ε. Step 1: z = z0 + .5(x̂ − z0) = .5 z0 + .25. Step 2 (t=.5): z = z + .5(x̂ − z)/.5 = x̂.
    stub = Stub(const=0.5)
    res = run(stub, SamplerSettings(steps=2, sampler="ode", time_grid="uniform"))
    z0, z_mid = stub.calls[0]["z"], stub.calls[1]["z"]
    gens = [torch.Generator().manual_seed(mix_seed(0, 1, j)) for j in range(2)]  # row j's own stream
    assert torch.equal(z0, 2.0 * torch.stack([torch.randn(3, 2, generator=g) for g in gens]))  # z0 = s·ε, s = 2
    assert torch.allclose(z_mid, 0.5 * z0 + 0.25)
    assert torch.allclose(res.z, torch.full_like(res.z, 0.5))


def test_t_eps_clamps_the_velocity_denominator():
    # 50 uniform steps: the last one starts at t = .98, where 1 − t = .02 < t_eps = .05
    stub = Stub(const=1.0)
    s = SamplerSettings(steps=50, sampler="ode", time_grid="uniform")
    res = run(stub, s)
    z_last = stub.calls[-2]["z"]  # the state the last denoise call saw (t = 0.98)
    expected = z_last + 0.02 * (1.0 - z_last) / 0.05
    assert torch.allclose(res.z, expected, atol=1e-6)


def test_v_prediction_is_converted_to_x_hat():
    # v-prediction: x̂ = z + max(1 − t, t_eps)·v̂; one step 0 → 1 lands on z0 + v̂.
    stub = Stub(const=0.25)
    res = run(stub, SamplerSettings(steps=1, sampler="ode", time_grid="uniform"), prediction="v")
    assert torch.allclose(res.z, stub.calls[0]["z"] + 0.25)


def test_sde_with_gamma_zero_equals_ode_exactly():
    a = run(Stub(const=0.2, k=0.5), SamplerSettings(steps=6, sampler="sde", gamma=0.0))
    b = run(Stub(const=0.2, k=0.5), SamplerSettings(steps=6, sampler="ode"))
    assert torch.equal(a.z, b.z) and torch.equal(a.token_ids, b.token_ids)


def test_sde_step_by_hand():
    # 2 uniform steps, γ = 1: step 0 at t=0 has α = .5, t_b = 0, z_b = .5 z0 + .5·s·ε'; z1 = z_b + .5·(x̂ − z_b).
    stub = Stub(const=0.5)
    run(stub, SamplerSettings(steps=2, sampler="sde", gamma=1.0, time_grid="uniform"))
    gens = [torch.Generator().manual_seed(mix_seed(0, 1, j)) for j in range(2)]  # one stream per row
    z0 = 2.0 * torch.stack([torch.randn(3, 2, generator=g) for g in gens])
    eps = torch.stack([torch.randn(3, 2, generator=g) for g in gens])  # the churn noise comes next in each stream
    z_b = 0.5 * z0 + 0.5 * 2.0 * eps
    assert torch.allclose(stub.calls[0]["z"], z_b)
    assert stub.calls[0]["t"][0].item() == 0.0
    assert torch.allclose(stub.calls[1]["z"], z_b + 0.5 * (0.5 - z_b))


def test_sde_churns_back_in_time_but_the_last_step_is_ode():
    stub = Stub()
    gamma = 1.5
    res = run(stub, SamplerSettings(steps=6, sampler="sde", gamma=gamma, time_grid="logit_normal"), seed=3)
    grid = res.grid.tolist()
    ts = [c["t"][0].item() for c in denoise_calls(stub)]
    assert len(ts) == 6
    for i in range(5):
        alpha = min(max(1 - gamma * (grid[i + 1] - grid[i]), 0.0), 1.0)
        assert ts[i] == pytest.approx(alpha * grid[i], abs=1e-6)
    assert ts[-1] == pytest.approx(grid[-2], abs=1e-7)  # t_{N−1}, not a churned t_b
    # no noise entered the last step: its input is exactly the previous step's Euler output
    calls = denoise_calls(stub)
    z_b, t_b = calls[-2]["z"], ts[-2]
    expected = z_b + (grid[-2] - t_b) * (stub.const - z_b) / max(1 - t_b, 0.05)
    assert torch.allclose(calls[-1]["z"], expected, atol=1e-5)
    # and the final state is that step's Euler output from t_{N−1} to 1
    z_l, t_l = calls[-1]["z"], grid[-2]
    assert torch.allclose(res.z, z_l + (1 - t_l) * (stub.const - z_l) / max(1 - t_l, 0.05), atol=1e-5)
    decode = stub.calls[-1]
    assert decode["decode"] is True and torch.all(decode["t"] == 1.0) and torch.all(decode["x_sc"] == 0)
    assert all(c["key_mask"] is None for c in stub.calls)


def test_self_conditioning_is_chained():
    stub = Stub(const=0.3, k=0.5)
    run(stub, SamplerSettings(steps=4, sampler="sde", gamma=1.0, time_grid="uniform"))
    calls = denoise_calls(stub)
    assert torch.equal(calls[0]["x_sc"], torch.zeros(2, 3, 2))
    for prev, nxt in zip(calls, calls[1:]):
        assert torch.allclose(nxt["x_sc"], stub.const + stub.k * prev["x_sc"])  # call k+1 gets call k's x̂


def test_sc_cfg_scale_reaches_the_tokens_of_every_pass():
    stub = Stub()
    run(stub, SamplerSettings(steps=3, sc_cfg=3.0))
    assert len(stub.calls) == 4 and all(torch.all(c["sc_cfg"] == 3.0) for c in stub.calls)


# ---------------------------------------------------------------------------------------------- conditions
class CondStub(Stub):
    """x̂ = +1 in rows whose condition latents are present (z at position 0 nonzero), −1 in rows without."""

    def forward(self, z, t, **kw):
        out, logits = super().forward(z, t, **kw)
        has_cond = (z[:, :1].abs().sum(-1, keepdim=True) > 0).float()
        return (has_cond * 2 - 1).expand_as(out).clone(), logits


def _cond(B=2, L=3, C=2, guided=True):
    lat = torch.zeros(B, L, C)
    lat[:, 0] = 7.0
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, 0] = True
    return Condition(lat, mask, guided=guided)


def test_cfg_is_one_batched_forward_and_combines_x_u_plus_w_times_difference():
    stub = CondStub()
    res = run(stub, SamplerSettings(steps=1, sampler="ode", time_grid="uniform", cfg=2.5), cond=_cond())
    first = stub.calls[0]
    assert first["B"] == 4                                  # conditional + unconditional rows in ONE call
    assert torch.all(first["z"][2:, 0] == 0) and torch.all(first["z"][:2, 0] == 7.0)
    assert torch.all(first["x_sc"][2:, 0] == 0) and torch.all(first["x_sc"][:2, 0] == 7.0)
    # one step 0 → 1 lands on x̂ = x_u + w(x_c − x_u) = −1 + 2.5·2 = 4 at free positions; condition pinned
    assert torch.allclose(res.z[:, 1:], torch.full((2, 2, 2), 4.0))
    assert torch.all(res.z[:, 0] == 7.0)
    assert res.rows == 4 + 2 and res.nfe == 2              # one 2B denoise pass + a B-row decode


def test_cfg_unconditional_rows_keep_the_condition_zeroed_in_later_steps():
    stub = CondStub()
    run(stub, SamplerSettings(steps=3, sampler="sde", gamma=1.0, cfg=2.0), cond=_cond())
    for c in denoise_calls(stub):
        assert c["B"] == 4
        assert torch.all(c["z"][2:, 0] == 0) and torch.all(c["x_sc"][2:, 0] == 0)
        assert torch.all(c["z"][:2, 0] == 7.0) and torch.all(c["x_sc"][:2, 0] == 7.0)
        assert torch.equal(c["z"][:2, 1:], c["z"][2:, 1:]) and torch.equal(c["x_sc"][:2, 1:], c["x_sc"][2:, 1:])


def test_cfg_scale_one_skips_the_unconditional_pass():
    stub = CondStub()
    res = run(stub, SamplerSettings(steps=3, cfg=1.0), cond=_cond())
    assert all(c["B"] == 2 for c in stub.calls) and res.rows == 2 * 4


def test_infill_pins_are_not_guided():
    stub = CondStub()
    run(stub, SamplerSettings(steps=2, cfg=2.0), cond=_cond(guided=False))
    assert all(c["B"] == 2 for c in stub.calls)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_condition_positions_stay_exactly_clean(cfg):
    stub = Stub(const=0.1, k=0.3)
    res = run(stub, SamplerSettings(steps=5, sampler="sde", gamma=2.0, cfg=cfg), cond=_cond())
    for c in denoise_calls(stub):
        assert torch.all(c["z"][:2, 0] == 7.0) and torch.all(c["x_sc"][:2, 0] == 7.0)
    assert torch.all(res.z[:, 0] == 7.0)


# ---------------------------------------------------------------------------------------------- kernels
def test_every_update_goes_through_the_kernel_entry_points(monkeypatch):
    seen = {"guidance_step": 0, "sde_noise_inject": 0}
    for name in seen:
        real = getattr(kernels, name)

        def wrapped(*a, _real=real, _name=name, **kw):
            seen[_name] += 1
            assert kw["backend"] == "torch" and (_name != "sde_noise_inject" or kw["noise"] is not None)
            return _real(*a, **kw)

        monkeypatch.setattr(kernels, name, wrapped)
    run(Stub(), SamplerSettings(steps=5, sampler="sde", gamma=1.0))
    assert seen == {"guidance_step": 5, "sde_noise_inject": 4}  # no churn on the last step


def test_triton_backend_draws_noise_in_kernel_with_advancing_offsets(monkeypatch):
    offsets = []

    def fake_noise(z, *, alpha, noise_scale, seed, offset, cond_latents=None, cond_mask=None, noise=None,
                   backend=None):
        assert noise is None and backend == "triton"
        offsets.append((seed, offset))
        return kernels.sde_noise_inject_ref(z, alpha=alpha, noise_scale=noise_scale, seed=seed, offset=offset,
                                            cond_latents=cond_latents, cond_mask=cond_mask)

    def fake_guidance(*a, backend=None, **kw):
        return kernels.guidance_step_ref(*a, **kw)

    monkeypatch.setattr(kernels, "resolve_backend", lambda z, requested=None: "triton")
    monkeypatch.setattr(kernels, "sde_noise_inject", fake_noise)
    monkeypatch.setattr(kernels, "guidance_step", fake_guidance)
    run(Stub(), SamplerSettings(steps=4, sampler="sde", gamma=1.0), B=2, L=3, C=2)
    assert [o for _, o in offsets] == [0, 2**40, 2 * 2**40] and len({s for s, _ in offsets}) == 1


# ---------------------------------------------------------------------------------------------- grid and seeds
def test_logit_normal_grid_is_reproducible_increasing_with_endpoints():
    a = time_grid(32, "logit_normal", p_mean=-1.5, p_std=0.8, generator=torch.Generator().manual_seed(7))
    b = time_grid(32, "logit_normal", p_mean=-1.5, p_std=0.8, generator=torch.Generator().manual_seed(7))
    c = time_grid(32, "logit_normal", p_mean=-1.5, p_std=0.8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (33,) and a[0] == 0.0 and a[-1] == 1.0 and bool((a[1:] > a[:-1]).all())
    s = EulerSampler(Stub(), FlowPath(), SamplerSettings(steps=8))
    r1, r2 = run(Stub(), SamplerSettings(steps=8), seed=1), run(Stub(), SamplerSettings(steps=8), seed=1)
    assert torch.equal(r1.grid, r2.grid) and s.grid().shape == (9,)
    assert torch.equal(time_grid(4, "uniform"), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))


def test_mix_seed_separates_seed_and_batch():
    assert mix_seed(0, 1_000_003) != mix_seed(1, 0)
    assert mix_seed(3, 4) == mix_seed(3, 4) and 0 <= mix_seed(2**70, -1) < 2**63


def _tiny_elf():
    torch.manual_seed(0)
    model = ELF(8, 11, depth=1, hidden_size=16, num_heads=2).eval()
    nn.init.normal_(model.flow_head.weight, std=0.3)
    nn.init.normal_(model.unembed.weight, std=1.0)
    return model


def test_same_seed_same_samples_different_seed_different():
    model = _tiny_elf()
    s = SamplerSettings(steps=4, sampler="sde", gamma=1.5)
    a = sample(model, batch=3, length=6, path=FlowPath(), settings=s, seed=5)
    b = sample(model, batch=3, length=6, path=FlowPath(), settings=s, seed=5)
    c = sample(model, batch=3, length=6, path=FlowPath(), settings=s, seed=6)
    assert a.token_ids.shape == (3, 6) and a.token_ids.max() < 11
    assert torch.equal(a.z, b.z) and torch.equal(a.token_ids, b.token_ids)
    assert not torch.equal(a.z, c.z) and not torch.equal(a.token_ids, c.token_ids)


def test_tiny_elf_with_cfg_and_condition():
    model = _tiny_elf()
    cond = Condition(torch.randn(2, 6, 8), torch.tensor([[1, 1, 0, 0, 0, 0]] * 2, dtype=torch.bool))
    res = sample(model, batch=2, length=6, path=FlowPath(), settings=SamplerSettings(steps=3, cfg=2.0, sampler="ode"),
                 cond=cond)
    assert torch.equal(res.z[:, :2], cond.latents[:, :2]) and res.rows == 3 * 4 + 2


def test_trajectory_decodes_x_hat_at_requested_steps_and_is_not_in_nfe():
    stub = Stub()
    res = run(stub, SamplerSettings(steps=4), trajectory=(0, 3))
    assert [k for k, _ in res.trajectory] == [0, 3] and res.trajectory_passes == 2 and res.nfe == 5
    traj_calls = [c for c in stub.calls[:-1] if c["decode"]]
    assert len(traj_calls) == 2 and all(torch.allclose(c["z"], torch.full_like(c["z"], stub.const))
                                        for c in traj_calls)  # the decoded latent is x̂, not z
    # each trajectory decode follows the step it records; the final decode comes last
    assert [bool(c["decode"]) for c in stub.calls] == [False, True, False, False, False, True, True]


def test_a_row_does_not_depend_on_its_batch_size():
    model = _tiny_elf()
    s = SamplerSettings(steps=3, sampler="sde", gamma=1.5)
    a = sample(model, batch=2, length=5, path=FlowPath(), settings=s, seed=9)
    b = sample(model, batch=4, length=5, path=FlowPath(), settings=s, seed=9)
    assert torch.allclose(a.z, b.z[:2], atol=1e-5) and torch.equal(a.token_ids, b.token_ids[:2])


# ---------------------------------------------------------------------------------------------- issue 16/17/18
def test_convenience_sample_follows_the_paths_prediction():
    model = _tiny_elf()
    s = SamplerSettings(steps=3, sampler="ode")
    v = sample(model, batch=2, length=5, path=FlowPath(prediction="v"), settings=s, seed=1)
    x = sample(model, batch=2, length=5, path=FlowPath(prediction="x"), settings=s, seed=1)
    direct = EulerSampler(model, FlowPath(prediction="v"), s).sample(2, 5, 8, seed=1, device=CPU)
    assert torch.equal(v.z, direct.z) and not torch.allclose(v.z, x.z)
    with pytest.raises(TypeError):
        sample(model, batch=2, length=5, settings=s)  # no silent x-prediction default


class NaNStub(Stub):
    """Returns NaN from its ``bad``-th denoise call on."""

    def __init__(self, bad):
        super().__init__()
        self.bad, self.n = bad, 0

    def forward(self, z, t, **kw):
        out, logits = super().forward(z, t, **kw)
        if not kw.get("decode"):
            self.n += 1
            if self.n >= self.bad:
                out = torch.full_like(out, float("nan"))
        return out, logits


def test_a_non_finite_state_stops_naming_the_step_instead_of_decoding():
    stub = NaNStub(bad=3)
    with pytest.raises(ElfRuntimeError, match=r"non-finite .* at step 3 of 4"):
        run(stub, SamplerSettings(steps=4, sampler="ode", time_grid="uniform"))
    assert not any(c["decode"] for c in stub.calls)  # nothing was decoded into token-0 "samples"


def test_chunked_decode_equals_one_pass_and_bounds_the_logit_rows():
    model = _tiny_elf()
    sizes = []
    model.register_forward_pre_hook(lambda m, args, kw: sizes.append((args[0].shape[0], kw.get("decode"))),
                                    with_kwargs=True)
    z = torch.randn(5, 6, 8)
    whole = EulerSampler(model, FlowPath(), SamplerSettings()).decode(z)
    # room for the logits of 2 sequences (2·6·11 fp32) per chunk
    chunked = EulerSampler(model, FlowPath(), SamplerSettings(), decode_logit_bytes=2 * 6 * 11 * 4).decode(z)
    assert torch.equal(whole, chunked) and whole.shape == (5, 6)
    assert sizes == [(5, True), (2, True), (2, True), (1, True)]


def test_bf16_autocast_is_chosen_only_on_cuda():
    from elfctl.sampling.precision import autocast_dtype, precision_label

    assert autocast_dtype("cuda", True) is torch.bfloat16 and autocast_dtype("cuda:1", True) is torch.bfloat16
    assert autocast_dtype("cuda", False) is None and autocast_dtype("cpu", True) is None
    assert precision_label("cpu", True) == "fp32"
    assert precision_label("cuda", True) == "bf16-autocast+tf32" and precision_label("cuda", False) == "fp32+tf32"
    # on the CPU, sample.bf16 changes nothing: bit-identical draws
    model = _tiny_elf()
    on = sample(model, batch=2, length=5, path=FlowPath(), settings=SamplerSettings(steps=3, bf16=True), seed=2)
    off = sample(model, batch=2, length=5, path=FlowPath(), settings=SamplerSettings(steps=3, bf16=False), seed=2)
    assert torch.equal(on.z, off.z)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_sampling_runs_the_trunk_in_bf16_and_returns_fp32():
    model = _tiny_elf().cuda()
    seen = []
    for mod in model.blocks.modules():
        if isinstance(mod, nn.Linear):
            mod.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    res = sample(model, batch=2, length=5, path=FlowPath(), settings=SamplerSettings(steps=2, bf16=True), seed=0)
    assert seen and all(d == torch.bfloat16 for d in seen)  # the trunk's matmuls ran in bf16
    assert res.z.dtype == torch.float32 and torch.isfinite(res.z).all()


def test_settings_defaults_are_the_sample_sections():
    from elfctl.config import ObjectiveConfig, SampleConfig

    s, c, o = SamplerSettings(), SampleConfig(), ObjectiveConfig()
    assert all(getattr(s, f) == getattr(c, f) for f in vars(c)) and (s.p_mean, s.p_std) == (o.p_mean, o.p_std)

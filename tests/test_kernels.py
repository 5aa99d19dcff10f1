"""Fused sampling kernels: references by hand, Triton (interpreted on the CPU) against the references."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # must be set before triton is imported

import pytest  # noqa: E402
import torch  # noqa: E402

from elfctl.errors import ConfigError  # noqa: E402
from elfctl.kernels import guidance_step, resolve_backend, sde_noise_inject  # noqa: E402
from elfctl.kernels.reference import guidance_step_ref, sde_noise_inject_ref  # noqa: E402

triton = pytest.importorskip("triton")
from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton  # noqa: E402


def test_guidance_reference_by_hand():
    # 1×2×1: position 0 free, position 1 a condition. x_c = 3, x_u = 1, w = 2.5 -> x = 1 + 2.5·2 = 6.
    # z = 1, t = 0.5, t_next = 0.75: v = (6 − 1)/0.5 = 10, z_next = 1 + 0.25·10 = 3.5. Condition: 9.
    xc = torch.tensor([[[3.0], [3.0]]])
    xu = torch.tensor([[[1.0], [1.0]]])
    z = torch.tensor([[[1.0], [9.0]]])
    cl = torch.tensor([[[0.0], [9.0]]])
    cm = torch.tensor([[False, True]])
    z_next, x = guidance_step_ref(xc, xu, z, scale=2.5, t=0.5, t_next=0.75, t_eps=0.05, cond_latents=cl, cond_mask=cm)
    assert z_next.flatten().tolist() == [3.5, 9.0] and x.flatten().tolist() == [6.0, 9.0]
    # near t = 1 the denominator is clamped at t_eps
    z_next, _ = guidance_step_ref(xc[:, :1], None, z[:, :1], scale=1.0, t=0.99, t_next=1.0, t_eps=0.05)
    assert z_next.item() == pytest.approx(1 + 0.01 * (3 - 1) / 0.05)


def test_sde_reference_by_hand():
    z = torch.tensor([[[1.0], [5.0]]])
    noise = torch.tensor([[[0.5], [0.5]]])
    out = sde_noise_inject_ref(z, alpha=0.6, noise_scale=2.0, noise=noise, cond_latents=z,
                               cond_mask=torch.tensor([[False, True]]))
    assert out.flatten().tolist() == pytest.approx([0.6 + 0.4 * 2.0 * 0.5, 5.0])


def _inputs(shape, dtype, *, mask_kind, noncontig):
    torch.manual_seed(0)
    B, L, C = shape
    make = lambda: torch.randn(B, C, L).transpose(1, 2) if noncontig else torch.randn(B, L, C)  # noqa: E731
    xc, xu, z, cl = (make().to(dtype) for _ in range(4))
    cm = {"none": None, "all": torch.ones(B, L, dtype=torch.bool), "some": torch.rand(B, L) < 0.3}[mask_kind]
    return xc, xu, z, (cl if cm is not None else None), cm


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("mask_kind", ["none", "all", "some"])
@pytest.mark.parametrize("uncond", [True, False])
def test_guidance_kernel_matches_reference(dtype, tol, scale, mask_kind, uncond):
    xc, xu, z, cl, cm = _inputs((3, 37, 41), dtype, mask_kind=mask_kind, noncontig=scale == 2.5)
    kw = dict(scale=scale, t=0.3, t_next=0.45, t_eps=0.05, cond_latents=cl, cond_mask=cm)
    got = guidance_step(xc, xu if uncond else None, z, backend="triton", **kw)
    want = guidance_step_ref(xc, xu if uncond else None, z, **kw)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), w.float(), rtol=tol, atol=tol)
    if scale == 1.0 and cm is None:  # scale 1 is no guidance
        torch.testing.assert_close(got[1].float(), xc.float(), rtol=tol, atol=tol)


def test_noise_kernel_matches_reference_given_its_own_noise():
    xc, _, z, cl, cm = _inputs((3, 37, 41), torch.float32, mask_kind="some", noncontig=True)
    out, eps = sde_noise_inject_triton(z, alpha=0.7, noise_scale=2.0, seed=11, offset=5, cond_latents=cl,
                                       cond_mask=cm, return_noise=True)
    want = sde_noise_inject_ref(z, alpha=0.7, noise_scale=2.0, noise=eps, cond_latents=cl, cond_mask=cm)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(out[cm], cl[cm])


def test_noise_is_reproducible_and_depends_on_seed_and_offset():
    z = torch.zeros(2, 16, 32)
    draw = lambda seed, off: sde_noise_inject(z, alpha=0.0, noise_scale=1.0, seed=seed, offset=off,  # noqa: E731
                                              backend="triton")
    a = draw(1, 0)
    assert torch.equal(a, draw(1, 0))
    assert not torch.equal(a, draw(1, 1024))
    assert not torch.equal(a, draw(2, 0))


def test_noise_statistics():
    z = torch.zeros(1, 256, 256)
    eps = sde_noise_inject(z, alpha=0.0, noise_scale=1.0, seed=7, offset=0, backend="triton")
    assert abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02


def test_dispatch(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.setenv("ELFCTL_KERNELS", "torch")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("ELFCTL_KERNELS", "auto")
    assert resolve_backend(cpu) == "torch"  # auto picks Triton only for CUDA tensors
    monkeypatch.setenv("ELFCTL_KERNELS", "triton")
    assert resolve_backend(cpu) == "triton"  # allowed: TRITON_INTERPRET=1
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="cannot run here.*TRITON_INTERPRET"):
        resolve_backend(cpu)
    monkeypatch.setenv("ELFCTL_KERNELS", "cuda-please")
    with pytest.raises(ConfigError, match="not valid; choose one of auto, triton, torch"):
        resolve_backend(cpu)


def test_ode_sampling_gives_the_same_tokens_with_triton_and_torch():
    from elfctl.flow import FlowPath
    from elfctl.model import ELF
    from elfctl.sampling.sampler import EulerSampler, SamplerSettings

    torch.manual_seed(0)
    model = ELF(8, 11, depth=1, hidden_size=16, num_heads=2).eval()
    torch.nn.init.normal_(model.flow_head.weight, std=0.3)
    s = SamplerSettings(steps=6, sampler="ode")
    res = {b: EulerSampler(model, FlowPath(), s, backend=b).sample(2, 5, 8, seed=3, device=torch.device("cpu"))
           for b in ("triton", "torch")}
    assert torch.equal(res["triton"].token_ids, res["torch"].token_ids)
    torch.testing.assert_close(res["triton"].z, res["torch"].z, rtol=1e-5, atol=1e-5)

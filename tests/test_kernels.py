"""Fused sampling kernels: references by hand, Triton (interpreted on the CPU) against the references, dispatch."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton reads it when a kernel is decorated: set it before any import

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from elfctl.errors import ConfigError, ElfRuntimeError  # noqa: E402
from elfctl.kernels import dispatch  # noqa: E402
from elfctl.kernels.ops import guidance_step, reference_noise, resolve_backend, sde_noise_inject  # noqa: E402
from elfctl.kernels.reference import guidance_step_ref, sde_noise_inject_ref  # noqa: E402
from philox_host import host_philox_normals  # noqa: E402

triton = pytest.importorskip("triton")
from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton  # noqa: E402

T, T_NEXT, T_EPS = 0.3, 0.45, 0.05


# ------------------------------------------------------------------ references by hand
def _hand_inputs():
    # 1×2×3: position 0 free, position 1 a condition (latents 9, 8, 7).
    xc = torch.tensor([[[3.0, 1.0, 0.0], [3.0, 3.0, 3.0]]])
    xu = torch.tensor([[[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]])
    z = torch.tensor([[[1.0, 0.0, -1.0], [-4.0, 4.0, 0.0]]])
    cl = torch.tensor([[[0.0, 0.0, 0.0], [9.0, 8.0, 7.0]]])
    cm = torch.tensor([[False, True]])
    return xc, xu, z, cl, cm


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_guidance_by_hand(backend):
    xc, xu, z, cl, cm = _hand_inputs()
    kw = dict(t=0.5, t_next=0.75, t_eps=0.05, cond_latents=cl, cond_mask=cm, backend=backend)
    # w = 2.5: x = x_u + 2.5·(x_c − x_u) = [6, 1, −3]; v = (x − z)/(1 − 0.5) = [10, 2, −4];
    # z_next = z + 0.25·v = [3.5, 0.5, −2]. The condition position is pinned to [9, 8, 7] in both outputs.
    z_next, x = guidance_step(xc, xu, z, scale=2.5, **kw)
    assert x.tolist() == [[[6.0, 1.0, -3.0], [9.0, 8.0, 7.0]]]
    assert z_next.tolist() == [[[3.5, 0.5, -2.0], [9.0, 8.0, 7.0]]]
    # no guidance: x = x_c = [3, 1, 0]; v = [4, 2, 2]; z_next = [2, 0.5, −0.5]
    z_next, x = guidance_step(xc, None, z, scale=2.5, **kw)
    assert x[0, 0].tolist() == [3.0, 1.0, 0.0] and z_next[0, 0].tolist() == [2.0, 0.5, -0.5]
    # scale 1 is no guidance, scale 0 is the unconditional prediction
    assert torch.equal(guidance_step(xc, xu, z, scale=1.0, **kw)[1][0, 0], xc[0, 0])
    assert torch.equal(guidance_step(xc, xu, z, scale=0.0, **kw)[1][0, 0], xu[0, 0])
    # near t = 1 the denominator is clamped at t_eps: 1 + 0.01·(3 − 1)/0.05
    z_next, _ = guidance_step(xc[:, :1, :1], None, z[:, :1, :1], scale=1.0, t=0.99, t_next=1.0, t_eps=0.05,
                              backend=backend)
    assert z_next.item() == pytest.approx(1 + 0.01 * (3 - 1) / 0.05, rel=1e-6)


def test_sde_reference_by_hand():
    z = torch.tensor([[[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]]])
    noise = torch.tensor([[[0.5, -1.0, 0.0], [0.5, 0.5, 0.5]]])
    cl = torch.full_like(z, -3.0)
    out = sde_noise_inject_ref(z, alpha=0.6, noise_scale=2.0, noise=noise, cond_latents=cl,
                               cond_mask=torch.tensor([[0.0, 1.0]]))  # a float mask works too
    # 0.6·z + 0.4·2·ε
    assert out.flatten().tolist() == pytest.approx([1.0, 0.4, 1.8, -3.0, -3.0, -3.0], rel=1e-6)


# ------------------------------------------------------------------ guidance kernel vs reference
def _make(shape, dtype, layout, gen):
    B, L, C = shape
    if layout == "transposed":
        return torch.randn(B, C, L, generator=gen).to(dtype).transpose(1, 2)
    if layout == "sliced":
        return torch.randn(B, L + 2, 2 * C, generator=gen).to(dtype)[:, 1:-1, ::2]
    return torch.randn(B, L, C, generator=gen).to(dtype)


def _inputs(shape, dtype, *, mask_kind, layout="contiguous", seed=0):
    gen = torch.Generator().manual_seed(seed)
    B, L, _ = shape
    xc, xu, z, cl = (_make(shape, dtype, layout, gen) for _ in range(4))
    cm = {"none": None, "all": torch.ones(B, L, dtype=torch.bool), "nothing": torch.zeros(B, L, dtype=torch.bool),
          "some": torch.rand(B, L, generator=gen) < 0.3}[mask_kind]
    return xc, xu, z, (cl if cm is not None else None), cm


def _close(got, want, dtype):
    tol = {torch.float32: (1e-6, 1e-6), torch.bfloat16: (1e-2, 1e-2), torch.float16: (1e-3, 1e-3)}[dtype]
    assert got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got.float(), want.float(), rtol=tol[0], atol=tol[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("mask_kind", ["none", "all", "nothing", "some"])
@pytest.mark.parametrize("uncond", [True, False])
def test_guidance_kernel_matches_reference(dtype, scale, mask_kind, uncond):
    xc, xu, z, cl, cm = _inputs((3, 37, 41), dtype, mask_kind=mask_kind)
    xu = xu if uncond else None
    kw = dict(scale=scale, t=T, t_next=T_NEXT, t_eps=T_EPS, cond_latents=cl, cond_mask=cm)
    got = guidance_step(xc, xu, z, backend="triton", **kw)
    want = guidance_step_ref(xc, xu, z, **kw)
    for g, w in zip(got, want):
        _close(g, w, dtype)
    if cm is None and (scale == 1.0 or xu is None):  # no guidance: the prediction is x_cond itself
        _close(got[1], xc, dtype)
    if cm is None and scale == 0.0 and xu is not None:
        _close(got[1], xu, dtype)
    if mask_kind == "all":
        assert torch.equal(got[0], cl) and torch.equal(got[1], cl)


@pytest.mark.parametrize("layout", ["transposed", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_guidance_kernel_non_contiguous_inputs(layout, dtype):
    xc, xu, z, cl, cm = _inputs((2, 19, 33), dtype, mask_kind="some", layout=layout, seed=1)
    assert not z.is_contiguous()
    kw = dict(scale=2.5, t=T, t_next=T_NEXT, t_eps=T_EPS, cond_latents=cl, cond_mask=cm)
    got = guidance_step(xc, xu, z, backend="triton", **kw)
    want = guidance_step_ref(xc.contiguous(), xu.contiguous(), z.contiguous(), **kw)
    for g, w in zip(got, want):
        _close(g, w, dtype)


def test_guidance_kernel_odd_shapes_and_broadcast_condition():
    for shape in [(1, 1, 1), (2, 3, 1), (1, 1, 1500), (5, 7, 3)]:
        xc, xu, z, _, _ = _inputs(shape, torch.float32, mask_kind="none", seed=2)
        kw = dict(scale=1.7, t=0.9, t_next=0.97, t_eps=0.2)
        for g, w in zip(guidance_step(xc, xu, z, backend="triton", **kw), guidance_step_ref(xc, xu, z, **kw)):
            _close(g, w, torch.float32)
    # a (1, L) float mask and (1, L, C) latents broadcast over the batch
    xc, xu, z, _, _ = _inputs((3, 6, 4), torch.float32, mask_kind="none", seed=3)
    cm, cl = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]), torch.randn(1, 6, 4)
    kw = dict(scale=2.0, t=T, t_next=T_NEXT, t_eps=T_EPS, cond_latents=cl, cond_mask=cm)
    got = guidance_step(xc, xu, z, backend="triton", **kw)
    for g, w in zip(got, guidance_step_ref(xc, xu, z, **kw)):
        _close(g, w, torch.float32)
    assert torch.equal(got[0][:, 3], cl[:, 3].expand(3, 4))


def test_input_checks():
    z = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="x_uncond has shape"):
        guidance_step(z, torch.zeros(2, 3, 5), z, scale=1.0, t=0.1, t_next=0.2, t_eps=0.05, backend="torch")
    with pytest.raises(ValueError, match="without cond_latents"):
        guidance_step(z, None, z, scale=1.0, t=0.1, t_next=0.2, t_eps=0.05, cond_mask=torch.ones(2, 3),
                      backend="triton")
    with pytest.raises(ValueError, match="do not broadcast"):
        sde_noise_inject(z, alpha=0.5, noise_scale=1.0, seed=0, offset=0, cond_latents=z,
                         cond_mask=torch.ones(3, 3), backend="torch")
    with pytest.raises(ValueError, match="offset"):
        sde_noise_inject(z, alpha=0.5, noise_scale=1.0, seed=0, offset=-1, backend="triton")


# ------------------------------------------------------------------ noise kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_noise_kernel_matches_reference_given_its_own_noise(dtype):
    _, _, z, cl, cm = _inputs((3, 37, 41), dtype, mask_kind="some", layout="transposed")
    out, eps = sde_noise_inject_triton(z, alpha=0.7, noise_scale=2.0, seed=11, offset=5, cond_latents=cl,
                                       cond_mask=cm, return_noise=True)
    assert eps.dtype == torch.float32 and eps.shape == z.shape
    want = sde_noise_inject_ref(z, alpha=0.7, noise_scale=2.0, noise=eps, cond_latents=cl, cond_mask=cm)
    _close(out, want, dtype)
    assert torch.equal(out[cm], cl[cm])
    # the public entry point draws the same noise
    assert torch.equal(sde_noise_inject(z, alpha=0.7, noise_scale=2.0, seed=11, offset=5, cond_latents=cl,
                                        cond_mask=cm, backend="triton"), out)


def _draw(seed, offset, shape=(2, 16, 32)):
    return sde_noise_inject(torch.zeros(shape), alpha=0.0, noise_scale=1.0, seed=seed, offset=offset,
                            backend="triton")


def test_noise_is_reproducible_and_depends_on_seed_and_offset():
    a = _draw(1, 0)
    assert torch.equal(a, _draw(1, 0))
    assert not torch.equal(a, _draw(1, 1024))
    assert not torch.equal(a, _draw(1, 1))
    assert not torch.equal(a, _draw(2, 0))
    # element i uses normal i % 4 of counter offset + i // 4: shifting the offset by k shifts the stream by 4k
    # elements, also across 2**32
    for base in (0, 2**32 - 100):
        full, shifted = _draw(5, base).flatten(), _draw(5, base + 75).flatten()
        assert torch.equal(full[300:], shifted[:-300])
        assert not torch.equal(full[75:], shifted[:-75])


def test_noise_uses_all_four_normals_of_each_philox_counter():
    # 14 elements: counters 2**32 - 2 .. 2**32 + 1 (the high counter word changes), the last one half used
    base = 2**32 - 2
    eps = _draw(123, base, shape=(1, 2, 7)).flatten().tolist()
    want = [v for j in range(4) for v in host_philox_normals(123, base + j)][:14]
    assert eps == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_noise_statistics():
    eps = _draw(7, 0, shape=(1, 256, 256)).double()  # 2**16 draws
    assert abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    nxt = _draw(7, 2**16, shape=(1, 256, 256)).double()  # the next step's noise is uncorrelated
    assert abs((eps * nxt).mean().item()) < 0.02


def test_reference_noise_is_deterministic():
    z = torch.zeros(2, 4, 8)
    a = sde_noise_inject(z, alpha=0.0, noise_scale=1.0, seed=3, offset=64, backend="torch")
    assert torch.equal(a, sde_noise_inject(z, alpha=0.0, noise_scale=1.0, seed=3, offset=64, backend="torch"))
    assert torch.equal(a, reference_noise(z.shape, 3, 64))
    assert not torch.equal(a, reference_noise(z.shape, 3, 65))
    assert not torch.equal(a, reference_noise(z.shape, 4, 64))
    # an explicit noise tensor wins over (seed, offset) whatever the backend
    n = torch.randn(2, 4, 8)
    assert torch.equal(sde_noise_inject(z, alpha=0.5, noise_scale=2.0, seed=3, offset=0, noise=n, backend="triton"),
                       1.0 * n)


# ------------------------------------------------------------------ dispatch
def test_dispatch(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("ELFCTL_KERNELS", raising=False)
    assert resolve_backend(cpu) == "torch"  # default auto: Triton only for CUDA tensors
    monkeypatch.setenv("ELFCTL_KERNELS", " Torch ")
    assert resolve_backend(cpu) == "torch"
    assert resolve_backend(cpu, "triton") == "triton"  # the argument wins over the environment
    monkeypatch.setenv("ELFCTL_KERNELS", "auto")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("ELFCTL_KERNELS", "")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("ELFCTL_KERNELS", "TRITON")
    assert resolve_backend(cpu) == "triton"  # allowed: TRITON_INTERPRET=1
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="ELFCTL_KERNELS=triton cannot run here: the tensor is on cpu.*"
                                          "TRITON_INTERPRET=1") as e:
        resolve_backend(cpu)
    assert "\n" not in str(e.value)
    assert resolve_backend(cpu, "auto") == "torch"
    monkeypatch.setenv("ELFCTL_KERNELS", "cuda-please")
    with pytest.raises(ConfigError, match="'cuda-please' is not valid; choose one of auto, triton, torch"):
        resolve_backend(cpu)
    with pytest.raises(ConfigError, match="not valid"):
        resolve_backend(cpu, "gpu")


def test_dispatch_without_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "triton_import_error", lambda: "ModuleNotFoundError: No module named 'triton'")
    cpu = torch.zeros(1)
    assert resolve_backend(cpu, "auto") == "torch"
    with pytest.raises(ConfigError, match="cannot run here: triton is not importable"):
        resolve_backend(cpu, "triton")
    with pytest.raises(ConfigError, match="before TRITON_INTERPRET=1 was set"):
        dispatch.check_launchable(object(), cpu)


def test_dispatch_refuses_interpreting_when_the_flag_came_too_late(monkeypatch):
    monkeypatch.setattr(dispatch, "_triton_library_interpreted", lambda: False)
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1 was set after triton was imported"):
        resolve_backend(torch.zeros(1), "triton")


# ------------------------------------------------------------------ probe, fallback, launch errors
@pytest.fixture
def fresh_probes(monkeypatch):
    """Let ``auto`` consider Triton for CPU tensors (the interpreter stands in for a GPU) with no probe remembered."""
    monkeypatch.delenv("ELFCTL_KERNELS", raising=False)
    monkeypatch.setattr(dispatch, "_auto_candidate", lambda device: True)
    dispatch.reset_probes()
    yield
    dispatch.reset_probes()


def _raise_launch(*args, **kwargs):
    raise RuntimeError("PTXAS error: Internal Triton PTX codegen error\nptxas fatal   : unsupported bf16")


def _step_inputs():
    xc, xu, z, cl, cm = _inputs((2, 5, 16), torch.float32, mask_kind="some", seed=4)
    return (xc, xu, z), dict(scale=2.5, t=T, t_next=T_NEXT, t_eps=T_EPS, cond_latents=cl, cond_mask=cm)


def test_auto_probes_once_per_device_and_keeps_triton_when_it_works(fresh_probes, monkeypatch, capsys):
    import elfctl.kernels.triton_guidance as tg

    calls = []
    real = tg.guidance_step_triton
    monkeypatch.setattr(tg, "guidance_step_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = torch.zeros(2, 3, 4)
    assert resolve_backend(z) == "triton" and resolve_backend(z) == "triton"
    assert len(calls) == 1  # one probe launch for (cpu, float32), remembered
    assert resolve_backend(z.bfloat16()) == "triton" and len(calls) == 2  # another dtype is probed on its own
    assert capsys.readouterr().err == ""


def test_auto_falls_back_with_one_warning_line_when_the_probe_launch_raises(fresh_probes, monkeypatch, capsys):
    import elfctl.kernels.triton_guidance as tg

    monkeypatch.setattr(tg, "guidance_step_triton", _raise_launch)
    args, kw = _step_inputs()
    assert resolve_backend(args[2]) == "torch"
    got = guidance_step(*args, **kw)  # auto: the reference, no second warning
    for g, w in zip(got, guidance_step_ref(*args, **kw)):
        assert torch.equal(g, w)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: Triton kernels unavailable on cpu (float32): ")
    assert "RuntimeError: PTXAS error: Internal Triton PTX codegen error; using the PyTorch reference" in err
    # a forced choice does not probe: the failing launch is one clear error
    with pytest.raises(ElfRuntimeError, match=r"ELFCTL_KERNELS=triton: the guidance_step launch failed "
                                              r"\(RuntimeError: PTXAS error.*\) on cpu; use ELFCTL_KERNELS=auto") as e:
        guidance_step(*args, backend="triton", **kw)
    assert "\n" not in str(e.value)


def test_auto_falls_back_when_a_later_launch_raises(fresh_probes, monkeypatch, capsys):
    import elfctl.kernels.triton_sde_noise as tn

    z = torch.randn(2, 3, 8)
    assert resolve_backend(z) == "triton"  # the real probe passes
    real = tn.sde_noise_inject_triton
    monkeypatch.setattr(tn, "sde_noise_inject_triton", _raise_launch)
    out = sde_noise_inject(z, alpha=0.5, noise_scale=1.0, seed=3, offset=64)  # e.g. a new shape fails to compile
    assert torch.equal(out, sde_noise_inject_ref(z, alpha=0.5, noise_scale=1.0, seed=3, offset=64))
    assert resolve_backend(z) == "torch"  # remembered for the device
    assert capsys.readouterr().err.count("warning: Triton kernels unavailable on cpu") == 1
    # running out of memory is not "Triton does not work here": raised as it is, no fallback remembered
    monkeypatch.setattr(tn, "sde_noise_inject_triton", real)
    dispatch.reset_probes()
    assert resolve_backend(z) == "triton"

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(tn, "sde_noise_inject_triton", oom)
    with pytest.raises(torch.OutOfMemoryError):
        sde_noise_inject(z, alpha=0.5, noise_scale=1.0, seed=3, offset=64)
    assert resolve_backend(z) == "triton"


def test_interpreter_is_never_used_on_cuda_tensors(monkeypatch, capsys):
    from types import SimpleNamespace

    dispatch.reset_probes()
    cuda_tensor = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32)  # only what dispatch reads
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET=1 is set" in dispatch.triton_refusal(torch.device("cuda", 0))
    assert resolve_backend(cuda_tensor, "auto") == "torch"
    assert "TRITON_INTERPRET=1 is set, so Triton would run its CPU interpreter on CUDA tensors" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="ELFCTL_KERNELS=triton cannot run here: TRITON_INTERPRET=1 is set"):
        resolve_backend(cuda_tensor, "triton")
    # kernels decorated under the interpreter refuse a CUDA launch even if the variable was unset later
    with pytest.raises(ConfigError, match="on CUDA tensors they would run in the CPU interpreter"):
        dispatch.check_launchable(dispatch_interpreted_kernel(), cuda_tensor)
    dispatch.reset_probes()


def dispatch_interpreted_kernel():
    from elfctl.kernels.triton_guidance import _guidance_step_kernel

    assert type(_guidance_step_kernel).__name__ == "InterpretedFunction"  # this test module runs interpreted
    return _guidance_step_kernel


def test_auto_on_a_gpu_that_cannot_launch_falls_back(monkeypatch, capsys):
    from types import SimpleNamespace

    # no interpreter: the probe really tries to launch on cuda:0, which this CPU-only torch cannot do
    dispatch.reset_probes()
    monkeypatch.setattr(dispatch, "interpreted", lambda: False)
    monkeypatch.setattr(dispatch, "_triton_library_interpreted", lambda: False)
    cuda_tensor = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.bfloat16)
    assert resolve_backend(cuda_tensor) == "torch"
    err = capsys.readouterr().err
    assert err.startswith("warning: Triton kernels unavailable on cuda:0 (bfloat16): ") and err.count("\n") == 1
    dispatch.reset_probes()


def test_kernels_launch_under_the_tensors_device(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    entered = []

    @contextlib.contextmanager
    def fake_device(device):  # torch.cuda.device: makes a device (and its current stream) current
        entered.append(torch.device(device))
        yield

    monkeypatch.setattr(torch.cuda, "device", fake_device)
    z = SimpleNamespace(device=torch.device("cuda", 1), dtype=torch.float32)
    seen = dispatch.launch("guidance_step", z, "triton", lambda: list(entered), lambda: None)
    assert seen == [torch.device("cuda", 1)]  # the launch ran inside cuda:1's context
    entered.clear()
    assert dispatch.launch("guidance_step", torch.zeros(1), "triton", lambda: list(entered), lambda: None) == []


def test_inputs_must_share_z_device():
    z = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="x_uncond is on meta, z is on cpu"):
        guidance_step(z, torch.zeros(2, 3, 4, device="meta"), z, scale=1.0, t=0.1, t_next=0.2, t_eps=0.05)


def test_no_guidance_and_no_condition_returns_the_prediction_itself():
    xc, _, z, _, _ = _inputs((2, 5, 16), torch.float32, mask_kind="none", seed=5)
    z_next, x = guidance_step(xc, None, z, scale=3.0, t=T, t_next=T_NEXT, t_eps=T_EPS, backend="triton")
    assert x is xc  # not a copy
    _close(z_next, guidance_step_ref(xc, None, z, scale=3.0, t=T, t_next=T_NEXT, t_eps=T_EPS)[0], torch.float32)


def test_import_without_triton():
    code = ("import sys; sys.modules['triton'] = None; import torch; import elfctl.kernels.ops as k; from elfctl.kernels import dispatch; "
            "z = torch.ones(1, 2, 3); print(k.resolve_backend(z), k.guidance_step(z, None, z, scale=1.0, t=0.5, "
            "t_next=1.0, t_eps=0.05)[0].sum().item(), dispatch.triton_import_error() is not None)")
    env = {**os.environ, "ELFCTL_KERNELS": "auto"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "6.0", "True"]


def test_public_functions_survive_submodule_imports():
    import elfctl.kernels.ops as k
    from elfctl.kernels.triton_guidance import guidance_step_triton  # noqa: F401 - the Triton module is named apart from the function

    assert callable(k.guidance_step) and k.guidance_step is guidance_step
    assert callable(k.sde_noise_inject)


# ------------------------------------------------------------------ in the sampler
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

"""The compiled Triton kernels on a real GPU (skipped without CUDA, and under TRITON_INTERPRET=1).

Run by ``benchmarks/gpu_check.sh`` in a process of their own without TRITON_INTERPRET (the CPU suite sets it:
Triton then interprets every kernel, and the dispatcher refuses to interpret on CUDA tensors).
"""

import pytest
import torch

from elfctl.kernels import dispatch
from elfctl.kernels.ops import guidance_step, resolve_backend, sde_noise_inject
from elfctl.kernels.reference import guidance_step_ref, sde_noise_inject_ref
from philox_host import host_philox_normals

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(dispatch.interpreted(), reason="TRITON_INTERPRET is set: run without it (gpu_check.sh does)"),
]

STEP = dict(scale=2.5, t=0.3, t_next=0.45, t_eps=0.05)
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3}


def _inputs(shape, dtype, device, seed=0, mask=True):
    g = torch.Generator(device="cpu").manual_seed(seed)
    xc, xu, z, cl = (torch.randn(*shape, generator=g).to(device=device, dtype=dtype) for _ in range(4))
    cm = (torch.rand(shape[:-1], generator=g) < 0.3).to(device) if mask else None
    return xc, xu, z, (cl if mask else None), cm


def _close(got, want, dtype):
    torch.testing.assert_close(got.float(), want.float(), rtol=TOL[dtype], atol=TOL[dtype])


def test_auto_probe_picks_triton_on_this_gpu():
    dispatch.reset_probes()
    assert resolve_backend(torch.zeros(1, 2, 8, device="cuda"), "auto") == "triton"
    if torch.cuda.get_device_capability() >= (8, 0):
        assert resolve_backend(torch.zeros(1, 2, 8, device="cuda", dtype=torch.bfloat16), "auto") == "triton"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("uncond", [True, False])
def test_guidance_kernel_matches_reference(dtype, mask, uncond):
    xc, xu, z, cl, cm = _inputs((8, 257, 512), dtype, "cuda", mask=mask)
    xu = xu if uncond else None
    got = guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton", **STEP)
    want = guidance_step_ref(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP)
    for g, w in zip(got, want):
        _close(g, w, dtype)
    if not uncond and not mask:
        assert got[1].data_ptr() == xc.data_ptr()  # returned, not copied


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_noise_kernel_matches_reference_and_host_philox(dtype):
    from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton

    _, _, z, cl, cm = _inputs((4, 129, 512), dtype, "cuda")
    base = 2**32 - 3  # counters across the 32-bit boundary
    out, eps = sde_noise_inject_triton(z, alpha=0.7, noise_scale=2.0, seed=11, offset=base, cond_latents=cl,
                                       cond_mask=cm, return_noise=True)
    _close(out, sde_noise_inject_ref(z, alpha=0.7, noise_scale=2.0, noise=eps, cond_latents=cl, cond_mask=cm), dtype)
    want = [v for j in range(6) for v in host_philox_normals(11, base + j)]
    torch.testing.assert_close(eps.flatten()[:24].cpu().double(), torch.tensor(want, dtype=torch.float64),
                               rtol=1e-4, atol=1e-4)
    e = eps.double()
    assert abs(e.mean().item()) < 0.01 and abs(e.std().item() - 1) < 0.01


def test_offsets_beyond_2_to_the_32_shift_the_stream():
    def draw(offset):
        return sde_noise_inject(torch.zeros(2, 64, 512, device="cuda"), alpha=0.0, noise_scale=1.0, seed=5,
                                offset=offset, backend="triton").flatten()

    for base in (2**32 - 1000, 2**40 + 7):
        a, b = draw(base), draw(base + 1000)
        assert torch.equal(a[4000:], b[:-4000])


def _free_gib() -> float:
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


def test_64_bit_index_path():
    """More than 2**31 elements: the kernels switch to 64-bit offsets; check the elements past 2**31."""
    n_rows = 2**31 // 512 + 8  # n = 2**31 + 4096 elements, bf16 (4 GiB a tensor)
    if _free_gib() < 40:
        pytest.skip("needs ~40 GiB of free GPU memory")
    from elfctl.kernels.triton_sde_noise import sde_noise_inject_triton

    z = torch.randn(1, n_rows, 512, device="cuda", dtype=torch.bfloat16)
    xc = torch.randn_like(z)
    z_next, x = guidance_step(xc, None, z, backend="triton", **STEP)
    tail = slice(n_rows - 16, n_rows)  # the last 16 rows: elements 2**31 - 4096 .. 2**31 + 4096
    want = guidance_step_ref(xc[:, tail], None, z[:, tail], **STEP)
    _close(z_next[:, tail], want[0], torch.bfloat16)
    del z_next, x, xc
    out, eps = sde_noise_inject_triton(z, alpha=0.5, noise_scale=1.0, seed=9, offset=3, return_noise=True)
    _close(out[:, tail], sde_noise_inject_ref(z[:, tail], alpha=0.5, noise_scale=1.0, noise=eps[:, tail]),
           torch.bfloat16)
    start = (n_rows - 16) * 512  # element index of the tail; a multiple of 4
    small = sde_noise_inject_triton(torch.zeros(1, 16, 512, device="cuda"), alpha=0.0, noise_scale=1.0, seed=9,
                                    offset=3 + start // 4)
    assert torch.equal(eps[:, tail].flatten(), small.flatten())
    del z, out, eps
    torch.cuda.empty_cache()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_launch_on_the_tensors_device_and_stream():
    torch.cuda.set_device(0)
    xc, xu, z, cl, cm = _inputs((4, 65, 256), torch.float32, "cuda:1")
    want = guidance_step_ref(xc, xu, z, cond_latents=cl, cond_mask=cm, **STEP)
    # GPU 0 is current: the kernels must still launch on GPU 1, where the tensors are
    for g, w in zip(guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton", **STEP), want):
        _close(g, w, torch.float32)
    # and on GPU 1's current stream (torch.cuda.stream also makes GPU 1 current inside the block)
    stream = torch.cuda.Stream(device="cuda:1")
    stream.wait_stream(torch.cuda.current_stream("cuda:1"))
    with torch.cuda.stream(stream):
        got = guidance_step(xc, xu, z, cond_latents=cl, cond_mask=cm, backend="triton", **STEP)
        noise = sde_noise_inject(z, alpha=0.5, noise_scale=1.0, seed=1, offset=0, backend="triton")
    stream.synchronize()
    assert torch.cuda.current_device() == 0 and got[0].device == torch.device("cuda", 1)
    for g, w in zip(got, want):
        _close(g, w, torch.float32)
    same = sde_noise_inject(z.to("cuda:0"), alpha=0.5, noise_scale=1.0, seed=1, offset=0, backend="triton")
    assert torch.equal(noise.cpu(), same.cpu())  # the same stream on either GPU


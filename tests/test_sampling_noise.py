"""Per-row noise streams: the CPU stream is the one elfctl always drew; the counter stream (CUDA) draws every row in
a fixed number of kernels and keeps each row independent of its batch."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from elfctl.sampling.noise import RowNoise, counter_randn, mix_seed


class CountOps(TorchDispatchMode):
    """Counts the aten operations (≈ kernel launches) run inside it."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def test_cpu_stream_is_one_generator_per_row_as_before():
    noise = RowNoise(7, 3, "cpu")
    assert not noise.counter
    first, second = noise.draw((3, 4, 2)), noise.draw((3, 4, 2))
    gens = [torch.Generator().manual_seed(mix_seed(7, 1, j)) for j in range(3)]
    assert torch.equal(first, torch.stack([torch.randn(4, 2, generator=g) for g in gens]))
    assert torch.equal(second, torch.stack([torch.randn(4, 2, generator=g) for g in gens]))


def test_counter_stream_rows_do_not_depend_on_the_batch_and_draws_differ():
    small, big = RowNoise(3, 2, "cpu", counter=True), RowNoise(3, 5, "cpu", counter=True)
    a, b = small.draw((2, 6, 4)), big.draw((5, 6, 4))
    assert torch.equal(a, b[:2])
    assert torch.equal(small.draw((2, 6, 4)), big.draw((5, 6, 4))[:2])  # the second draw too
    again = RowNoise(3, 2, "cpu", counter=True).draw((2, 6, 4))
    assert torch.equal(a, again)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, small.draw((2, 6, 4)))
    assert not torch.equal(a, RowNoise(4, 2, "cpu", counter=True).draw((2, 6, 4)))


def test_counter_stream_is_standard_normal():
    keys = torch.tensor([mix_seed(s, 1, j) for s in range(2) for j in range(4)])
    x = counter_randn(keys, 5, 50_000)  # 400k draws: the standard error of the mean is 0.0016
    assert abs(x.mean().item()) < 0.008 and abs(x.std().item() - 1) < 0.008
    tail = (x.abs() > 1.96).float().mean().item()
    assert abs(tail - 0.05) < 0.003
    lag = torch.corrcoef(torch.stack([x[:, :-1].flatten(), x[:, 1:].flatten()]))[0, 1].item()
    assert abs(lag) < 0.01
    assert torch.isfinite(x).all()


def test_counter_stream_costs_the_same_kernels_for_any_batch():
    counts = {}
    for batch in (2, 32):
        noise = RowNoise(0, batch, "cpu", counter=True)
        with CountOps() as ops:
            noise.draw((batch, 8, 4))
        counts[batch] = ops.n
    assert counts[2] == counts[32]
    per_row = {}
    for batch in (2, 32):  # while the generator stream launches per row
        noise = RowNoise(0, batch, "cpu")
        with CountOps() as ops:
            noise.draw((batch, 8, 4))
        per_row[batch] = ops.n
    assert per_row[32] > per_row[2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_uses_the_counter_stream_and_matches_it_on_the_cpu():
    noise = RowNoise(1, 3, "cuda")
    assert noise.counter
    got = noise.draw((3, 5, 2)).cpu()
    want = RowNoise(1, 3, "cpu", counter=True).draw((3, 5, 2))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

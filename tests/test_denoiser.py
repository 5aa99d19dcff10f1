"""The one ELF denoiser wrapper (network + path -> x̂, v̂) that the objective, the distillation teacher and the
sampler share."""

import torch

from elfctl.denoiser import Denoiser
from elfctl.flow import FlowPath


class Constant(torch.nn.Module):
    """A 'network' whose output is a fixed tensor, so x̂ and v̂ can be written out by hand."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.calls = []

    def forward(self, z, t, *, x_sc=None, sc_cfg=None, decode=None, key_mask=None):
        self.calls.append((x_sc, sc_cfg, decode))
        return self.out, None


def test_x_and_v_prediction_by_hand():
    z = torch.tensor([[[1.0, 2.0]]])
    out = torch.tensor([[[3.0, -1.0]]])
    t = torch.tensor([0.5])
    path_x, path_v = FlowPath(t_eps=0.05, prediction="x"), FlowPath(t_eps=0.05, prediction="v")
    x_hat, v_hat = Denoiser(Constant(out), path_x).predict(z, t, x_sc=torch.zeros_like(z))
    assert torch.equal(x_hat, out)
    assert torch.allclose(v_hat, torch.tensor([[[4.0, -6.0]]]))      # (x̂ − z) / (1 − t)
    x_hat, v_hat = Denoiser(Constant(out), path_v).predict(z, t, x_sc=torch.zeros_like(z))
    assert torch.allclose(x_hat, torch.tensor([[[2.5, 1.5]]]))       # z + (1 − t)·v̂
    assert torch.equal(v_hat, out)
    # near t = 1 the denominator is t_eps, not 1 − t
    x_hat, _ = Denoiser(Constant(out), path_v).predict(z, torch.tensor([0.99]), x_sc=torch.zeros_like(z))
    assert torch.allclose(x_hat, z + 0.05 * out)


def test_condition_positions_take_the_clean_latents_and_velocity_can_be_skipped():
    z = torch.zeros(1, 3, 2)
    out = torch.ones(1, 3, 2)
    clean = torch.full((1, 3, 2), 7.0)
    mask = torch.tensor([[True, False, False]])
    net = Constant(out)
    x_hat, v_hat = Denoiser(net, FlowPath()).predict(z, torch.tensor([0.2]), x_sc=z, sc_cfg=torch.tensor([2.0]),
                                                       cond_x=clean, cond_mask=mask, velocity=False)
    assert v_hat is None
    assert torch.equal(x_hat[0, 0], clean[0, 0]) and torch.equal(x_hat[0, 1:], out[0, 1:])
    x_sc, sc_cfg, decode = net.calls[-1]
    assert decode is None and torch.equal(sc_cfg, torch.tensor([2.0]))  # a denoise pass, the scale passed through

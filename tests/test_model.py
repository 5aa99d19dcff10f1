"""The ELF network and the flow path: shapes, masks, the mode gate, init, RoPE, presets, path math."""

import math

import pytest
import torch

from elfctl.flow import FlowPath, sample_sc_cfg_scale, time_grid
from elfctl.layers import RotaryEmbedding1D, SwiGLU
from elfctl.model import ELF, PRESETS, count_parameters


def tiny(**kw):
    torch.manual_seed(0)
    return ELF(8, 13, depth=kw.pop("depth", 2), hidden_size=16, num_heads=2, **kw).eval()


def test_shapes_in_both_modes():
    m = tiny()
    z, t = torch.randn(3, 5, 8), torch.rand(3)
    out, logits = m(z, t)
    assert out.shape == (3, 5, 8) and logits is None
    out, logits = m(z, t, decode=True)
    assert logits.shape == (3, 5, 13)
    _, logits = m(z, t, decode=torch.tensor([1.0, 0.0, 1.0]), logit_rows=torch.tensor([0, 2]))
    assert logits.shape == (2, 5, 13)


def test_zero_initialised_flow_head_outputs_zeros():
    out, _ = tiny()(torch.randn(2, 4, 8), torch.rand(2))
    assert torch.count_nonzero(out) == 0


def _trained_like(m):
    torch.nn.init.normal_(m.flow_head.weight, std=0.1)
    return m


def test_padded_keys_do_not_change_valid_positions():
    m = _trained_like(tiny())
    z, t = torch.randn(2, 6, 8), torch.rand(2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 4:] = False
    z2 = z.clone()
    z2[:, 4:] += 5.0
    a, _ = m(z, t, key_mask=mask)
    b, _ = m(z2, t, key_mask=mask)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    c, _ = m(z2, t)  # without the mask the change does reach the valid positions
    assert not torch.allclose(a[:, :4], c[:, :4], atol=1e-3)


def test_mode_gate():
    # In denoise mode the mode tokens are multiplied by 0: the network must behave exactly as if the learned
    # mode tokens were zero. Switching the gate on changes the decode logits. (The mode tokens are attended
    # to, so the gate changes the hidden states, hence both heads, when on; the flow head is only read in
    # denoise mode and the decode head only in decode mode.)
    m = _trained_like(tiny())
    z, t = torch.randn(2, 5, 8), torch.rand(2)
    off, logits_off = m(z, t, decode=False, return_logits=True)
    with torch.no_grad():
        saved = m.mode_tokens.clone()
        m.mode_tokens.zero_()
        zeroed, logits_zeroed = m(z, t, decode=True)
        m.mode_tokens.copy_(saved)
    assert torch.allclose(off, zeroed, atol=1e-6) and torch.allclose(logits_off, logits_zeroed, atol=1e-5)
    _, logits_on = m(z, t, decode=True)
    assert not torch.allclose(logits_on, logits_off, atol=1e-4)


def test_per_example_gate_equals_running_rows_separately():
    m = _trained_like(tiny())
    z, t = torch.randn(2, 5, 8), torch.rand(2)
    out, logits = m(z, t, decode=torch.tensor([1.0, 0.0]), return_logits=True)
    o0, l0 = m(z[:1], t[:1], decode=True)
    o1, l1 = m(z[1:], t[1:], decode=False, return_logits=True)
    assert torch.allclose(out[0], o0[0], atol=1e-5) and torch.allclose(logits[1], l1[0], atol=1e-5)


def test_rope_prefix_unrotated_and_relative():
    rope = RotaryEmbedding1D(8, num_prefix=3)
    cos, sin = rope.tables(5, torch.device("cpu"))
    assert torch.equal(cos[:3], torch.ones(3, 8)) and torch.equal(sin[:3], torch.zeros(3, 8))
    q, k = torch.randn(8), torch.randn(8)
    rot = lambda x, p: RotaryEmbedding1D.rotate(x.view(1, 1, 1, 8), cos[3 + p], sin[3 + p]).view(8)  # noqa: E731
    assert math.isclose(rot(q, 2).norm().item(), q.norm().item(), rel_tol=1e-5)
    assert math.isclose(rot(q, 1) @ rot(k, 3), rot(q, 0) @ rot(k, 2), rel_tol=1e-4)  # depends on 3 - 1 only


def test_swiglu_width_and_middle_half_dropout():
    assert SwiGLU(768).w3.in_features == int(4 * 768 * 2 / 3) == 2048
    m = ELF(8, 13, depth=8, hidden_size=16, num_heads=2, dropout=0.1)
    assert [b.mlp.dropout for b in m.blocks] == [0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0]


@pytest.mark.parametrize("preset, target", [("elf-b", 104_579_940), ("elf-m", 342_540_036),
                                            ("elf-l", 652_103_332)])
def test_preset_parameter_counts_on_meta(preset, target):
    # t5-small: latent width 512, vocabulary len(tokenizer) = 32,100; the paper rounds to 105M / 342M / 652M
    s = PRESETS[preset]
    with torch.device("meta"):
        m = ELF(512, 32100, depth=s.depth, hidden_size=s.hidden_size, num_heads=s.num_heads)
    assert count_parameters(m) == target


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        m = _trained_like(tiny(gradient_checkpointing=ckpt)).train()
        torch.manual_seed(1)
        z, t = torch.randn(2, 4, 8), torch.rand(2)
        out, logits = m(z, t, decode=True)
        (out.sum() + logits.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_flow_path_by_hand():
    p = FlowPath(noise_scale=2.0, t_eps=0.05)
    x, eps, t = torch.tensor([[[1.0]]]), torch.tensor([[[1.0]]]), torch.tensor([0.25])
    z = p.interpolate(x, eps, t)
    assert z.item() == pytest.approx(0.25 + 0.75 * 2)                 # 1.75
    assert p.velocity(x, z, t).item() == pytest.approx((1 - 1.75) / 0.75)
    assert p.velocity(x, z, torch.tensor([0.99])).item() == pytest.approx((1 - 1.75) / 0.05)  # t_eps clamp
    xv = FlowPath(2.0, 0.05, prediction="v")
    x_hat, v_hat = xv.to_x_v(torch.tensor([[[-1.0]]]), z, t)
    assert v_hat.item() == -1.0 and x_hat.item() == pytest.approx(1.75 - 0.75)
    cond = torch.tensor([[True, False]])
    zz = p.interpolate(torch.ones(1, 2, 1), torch.ones(1, 2, 1), torch.tensor([0.0]), cond)
    assert zz.flatten().tolist() == [1.0, 2.0]


def test_sc_cfg_scale_is_log_uniform_in_range():
    torch.manual_seed(0)
    w = sample_sc_cfg_scale(20000, lo=0.5, hi=5.0)
    assert w.min() >= 0.5 - 1e-6 and w.max() <= 5.0 + 1e-6
    assert w.median().item() == pytest.approx(math.sqrt(1.5 * 6.0) - 1, abs=0.05)


def test_time_grid():
    g = time_grid(8, "logit_normal", generator=torch.Generator().manual_seed(3))
    assert g[0] == 0 and g[-1] == 1 and len(g) == 9 and bool((g[1:] > g[:-1]).all())
    assert torch.equal(g, time_grid(8, "logit_normal", generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(time_grid(4, "uniform"), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))

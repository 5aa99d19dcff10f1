"""MDLM, the masked-diffusion family: schedule, times, corruption, SUBS, the NELBO, the ancestral sampler and its
float64 draws (MDLM-BASELINE §7), the backbone's shape, and the family end to end (train, sample, eval)."""

import json
import math

import pytest
import torch

from elfctl.families.mdlm import mask_token
from elfctl.families.mdlm import sampler as S
from elfctl.families.mdlm.likelihood import validation_nelbo
from elfctl.families.mdlm.masking import LogLinearSchedule, corrupt, subs_log_probs, training_times
from elfctl.families.mdlm.network import DiT, forward_flops
from elfctl.families.mdlm.objective import MdlmObjective

EPS = 1e-3


class ConstantLogits(torch.nn.Module):
    """The same logits at every position, whatever the input; counts its forwards."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.calls = logits, 0

    def forward(self, z, sigma=None, rows=None):
        self.calls += 1
        return at_rows(self.logits.expand(*z.shape, -1), rows).clone()


class Oracle(torch.nn.Module):
    """+1e4 on the clean token x_i at position i (the data is one fixed batch)."""

    def __init__(self, x, vocab):
        super().__init__()
        self.x, self.vocab = x, vocab

    def forward(self, z, sigma=None, rows=None):
        return at_rows(torch.nn.functional.one_hot(self.x, self.vocab).float() * 1e4, rows)


def at_rows(logits, rows):
    """What a network returns when asked for some positions only (``rows`` into the flattened B·L)."""
    return logits if rows is None else logits.flatten(0, 1).index_select(0, rows)


def binomial_ok(count, n, p, k=4.0):
    return abs(count - n * p) <= k * math.sqrt(n * p * (1 - p)) + 1


# 1 ------------------------------------------------------------------------------------------------ schedule
def test_schedule_ends_and_the_weight_is_one_over_t():
    s = LogLinearSchedule(EPS)
    assert s.alpha(0.0) == 1.0 and s.alpha(1.0) == pytest.approx(EPS, abs=1e-15)
    t = torch.linspace(1e-3, 1.0, 257, dtype=torch.float64, requires_grad=True)
    sigma = s.sigma(t)
    (dsigma,) = torch.autograd.grad(sigma.sum(), t)
    w = (-s.dalpha(t) / (1 - s.alpha(t))).detach()
    torch.testing.assert_close(w, 1 / t.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close((dsigma / torch.expm1(sigma)).detach(), 1 / t.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(s.weight(t.detach()), 1 / t.detach(), rtol=1e-6, atol=0)


# 2 ------------------------------------------------------------------------------------------------ times
def test_stratified_training_times_take_one_per_stratum():
    torch.manual_seed(0)
    n = 64
    for _ in range(20):
        t = training_times(n, EPS, stratified=True).double().sort().values
        i = torch.arange(n, dtype=torch.float64)
        lo, hi = EPS + (1 - EPS) * i / n, EPS + (1 - EPS) * (i + 1) / n
        assert bool((t >= lo - 1e-7).all()) and bool((t < hi + 1e-7).all())
    flat = training_times(n, EPS, stratified=False)
    assert bool((flat >= EPS).all()) and bool((flat < 1).all())


# 3 ------------------------------------------------------------------------------------------------ corruption
@pytest.mark.parametrize("t", [0.01, 0.3, 0.9, 1.0])
def test_corruption_masks_at_the_schedule_rate_and_keeps_the_rest(t):
    torch.manual_seed(1)
    m, B, L = 7, 64, 512
    x = torch.randint(0, 7, (B, L))          # ids below m: the data has no [MASK]
    z = corrupt(x, torch.full((B,), (1 - EPS) * t), m)
    masked = z == m
    assert binomial_ok(int(masked.sum()), B * L, (1 - EPS) * t)
    assert torch.equal(z[~masked], x[~masked])


# 4 ------------------------------------------------------------------------------------------------ SUBS
def test_subs_probabilities_carry_over_and_gradient():
    torch.manual_seed(2)
    V, m = 9, 4
    logits = torch.randn(3, 10, V, requires_grad=True)
    x = torch.randint(0, V, (3, 10))
    x[x == m] = 0
    z = corrupt(x, torch.full((3,), 0.5), m)
    z[0, 0], z[0, 1] = m, x[0, 1]             # at least one masked and one unmasked position
    logp = subs_log_probs(logits, z, m)
    masked = z == m
    p = logp.exp()
    torch.testing.assert_close(p[masked].sum(-1), torch.ones(int(masked.sum())))
    assert bool((p[masked][:, m] == 0).all())
    keep = logp[~masked]
    assert bool((keep.gather(-1, z[~masked][:, None]) == 0).all())
    assert bool(torch.isneginf(keep).sum(-1).eq(V - 1).all())        # -inf everywhere else
    # the loss's gradient never reaches an unmasked position
    obj = MdlmObjective(m, eps=EPS)
    out = obj(lambda zz, sigma, rows: at_rows(logits, rows), None, x, torch.ones_like(x, dtype=torch.bool), None,
              t=torch.full((3,), 0.5), z=z)
    out.loss.backward()
    assert bool((logits.grad[~masked] == 0).all()) and bool((logits.grad[masked].abs().sum(-1) > 0).all())


# 5 ------------------------------------------------------------------------------------------------ loss values
@pytest.mark.parametrize("t", [1e-3, 0.5, 1.0])
def test_oracle_loss_is_zero_and_uniform_logits_give_log_v_minus_1(t):
    torch.manual_seed(3)
    V, m, B, L = 11, 10, 256, 4096
    x = torch.randint(0, m, (B, L))
    am = torch.ones_like(x, dtype=torch.bool)
    obj = MdlmObjective(m, eps=EPS)
    tt = torch.full((B,), t)
    assert float(obj(Oracle(x, V), None, x, am, None, t=tt).loss) == 0.0
    out = obj(ConstantLogits(torch.zeros(V)), None, x, am, None, t=tt)
    p = (1 - EPS) * t
    want = (1 - EPS) * math.log(V - 1)
    sd = math.log(V - 1) / t * math.sqrt(p * (1 - p) / (B * L))      # binomial spread of the masked count
    assert abs(float(out.loss) - want) <= 4 * sd + 1e-9
    assert float(out.ce) == pytest.approx(math.log(V - 1), rel=1e-5)


def test_pads_carry_no_loss_and_the_denominator_counts_every_valid_position():
    V, m = 6, 5
    x = torch.tensor([[1, 2, 3, 0]])
    am = torch.tensor([[True, True, True, False]])
    z = torch.tensor([[m, 2, m, m]])            # the pad is corrupted too, but scores nothing
    obj = MdlmObjective(m, eps=EPS)
    out = obj(ConstantLogits(torch.zeros(V)), None, x, am, None, t=torch.tensor([0.5]), z=z)
    # two valid masked tokens, each -log(1/5) weighted 1/t = 2, over 3 valid positions
    assert float(out.loss) == pytest.approx(2 * 2 * math.log(5) / 3, rel=1e-6)


def test_a_fresh_network_is_uniform_and_its_validation_bound_is_v_minus_1_to_the_1_minus_eps():
    torch.manual_seed(4)
    V, m, L = 23, 22, 64
    net = DiT(V, depth=1, hidden_size=16, num_heads=2, cond_dim=8)
    ids = torch.randint(0, m, (4, L))
    assert torch.equal(net(ids), torch.zeros(4, L, V))               # zero head: uniform logits
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    rows = torch.tensor([0, 5, L + 3, 3 * L + L - 1])
    torch.testing.assert_close(net(ids, rows=rows), net(ids).flatten(0, 1)[rows])  # some positions only
    net = DiT(V, depth=1, hidden_size=16, num_heads=2, cond_dim=8)
    data = [{"input_ids": torch.randint(0, m, (L,)), "attention_mask": torch.ones(L, dtype=torch.bool)}
            for _ in range(512)]
    res = validation_nelbo(net, MdlmObjective(m, eps=EPS), data, batch_size=64, device=torch.device("cpu"))
    assert res["tokens"] == 512 * L
    assert res["ppl"] == pytest.approx((V - 1) ** (1 - EPS), rel=0.03)
    again = validation_nelbo(net, MdlmObjective(m, eps=EPS), data, batch_size=64, device=torch.device("cpu"))
    assert again["nll"] == res["nll"]                                # seeded: the same number twice


# 6 ------------------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("steps", [1, 2, 8, 128])
@pytest.mark.parametrize("cache", [True, False])
def test_no_mask_survives_and_revealed_tokens_never_change(steps, cache):
    torch.manual_seed(5)
    V, m = 13, 12
    sampler = S.AncestralSampler(ConstantLogits(torch.randn(V)), mask_id=m, steps=steps, eps=EPS, cache=cache)
    res = sampler.sample(6, 40, seed=7, device="cpu", trajectory_steps=range(steps))
    assert not bool((res.token_ids == m).any())
    canvases = [c for _, c in res.trajectory] + [res.token_ids]
    for a, b in zip(canvases, canvases[1:]):
        shown = a != m
        assert torch.equal(a[shown], b[shown])


def test_one_step_unmasks_the_schedule_share_and_the_masked_fraction_follows_alpha():
    V, m, L = 9, 8, 4096
    sampler = S.AncestralSampler(ConstantLogits(torch.zeros(V)), mask_id=m, steps=16, eps=EPS, cache=True)
    g = torch.Generator().manual_seed(0)
    z = torch.full((1, L), m)
    grid = sampler.grid().tolist()
    for k in range(16):
        t, s = grid[k], grid[k + 1]
        n_masked = int((z == m).sum())
        z_next = sampler.step(z, sampler.logits(z, t), t, s, g)
        a_t, a_s = 1 - t, 1 - s                                      # ddpm_cache: alpha = 1 - t
        revealed = n_masked - int((z_next == m).sum())
        assert binomial_ok(revealed, n_masked, (a_s - a_t) / (1 - a_t))
        assert binomial_ok(int((z_next == m).sum()), L, 1 - a_s)     # the marginal: masked w.p. 1 - alpha_s
        z = z_next


# 7 ------------------------------------------------------------------------------------------------ caching
class Counting(torch.nn.Module):
    """Logits that depend on the canvas (so a changed canvas must be run again); counts forwards."""

    def __init__(self, V):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.table = torch.randn(V, V, generator=g)
        self.calls = 0

    def forward(self, z, sigma=None, rows=None):
        self.calls += 1
        return at_rows(self.table[z] + self.table[z.roll(1, dims=1)], rows)


@pytest.mark.parametrize("steps,rows,L", [(8, 1, 16), (64, 1, 16), (128, 1, 4), (33, 1, 32), (64, 5, 16),
                                           (128, 3, 8)])
def test_cache_bounds_the_forwards_and_changes_no_sample(steps, rows, L):
    V, m = 15, 14
    cached, plain = Counting(V), Counting(V)
    a = S.AncestralSampler(cached, mask_id=m, steps=steps, cache=True).sample(rows, L, seed=3, device="cpu")
    b_sampler = S.AncestralSampler(plain, mask_id=m, steps=steps, cache=True)
    b_sampler.cache = False                                          # the same alphas, a forward every step
    b = b_sampler.sample(rows, L, seed=3, device="cpu")
    assert torch.equal(a.token_ids, b.token_ids)
    assert a.nfe == cached.calls <= min(steps, rows * L + 1) + 1   # one row: MDLM's min(T, L + 1) + 1
    assert plain.calls == b.nfe and cached.calls < plain.calls
    assert a.nfe_breakdown["denoise"] + a.nfe_breakdown["noise_removal"] == a.nfe


# 8 ------------------------------------------------------------------------------------------------ float64
def test_draws_in_chunks_of_rows_match_one_draw_per_row(monkeypatch):
    V, m = 7, 6
    logits = torch.randn(50, V)
    whole = S.AncestralSampler(None, mask_id=m, steps=2)._draw(logits, 0.2, 0.6, torch.Generator().manual_seed(0))
    monkeypatch.setattr(S, "CHUNK_BYTES", 8 * V * 3)                 # three rows per chunk
    parts = S.AncestralSampler(None, mask_id=m, steps=2)._draw(logits, 0.2, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(whole, parts)                                 # the CPU stream does not depend on the chunking


def test_categorical_draws_are_float64(monkeypatch):
    seen = []
    real = S.race

    def spy(q, u):
        seen.append((q.dtype, u.dtype))
        return real(q, u)

    monkeypatch.setattr(S, "race", spy)
    V, m = 7, 6
    S.AncestralSampler(ConstantLogits(torch.randn(V)), mask_id=m, steps=4, noise_removal="ancestral").sample(
        2, 8, seed=0, device="cpu")
    assert seen and all(d == (torch.float64, torch.float64) for d in seen)


def test_a_rare_token_wins_in_float64_where_float32_uniforms_cut_it_off():
    q = torch.tensor([1.0, 1e-9], dtype=torch.float64)              # [MASK] mass 1, a rare token 1e-9
    u = torch.tensor([0.5, 1 - 2.0 ** -53], dtype=torch.float64)
    assert int(S.race(q, u)) == 1
    # fp32 uniforms stop at 1 - 2^-24: E >= 6e-8, and the rare token can never beat [MASK] here
    u32 = torch.tensor([0.5, 1 - 2.0 ** -24], dtype=torch.float32)
    assert int(S.race(q.float(), u32)) == 0


def test_categorical_matches_its_probabilities_chi_square():
    q = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64).expand(100_000, 3)
    draws = S.categorical(q, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=3).double()
    expected = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64) * 100_000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8                                               # chi^2(2) at p = 0.001


# ------------------------------------------------------------------------------------------------ the backbone
def test_mask_token_reuses_the_tokenizers_own_or_appends_one():
    class Tok:
        def __init__(self, n, mask):
            self.n, self.mask_token_id = n, mask

        def __len__(self):
            return self.n

    assert mask_token(Tok(30522, 103)) == (103, 30522)               # BERT / MiniLM
    assert mask_token(Tok(50257, None)) == (50257, 50258)           # GPT-2: m = len(tokenizer)


def test_quickstart_shape_has_the_specified_parameter_count_and_flops():
    net = DiT(30522, depth=4, hidden_size=256, num_heads=4, cond_dim=128)
    parts = {"embed": net.embed.numel(), "blocks": sum(p.numel() for p in net.blocks.parameters()),
             "head": net.head.weight.numel() + net.head.bias.numel() + net.norm_final.weight.numel(),
             "cond": sum(p.numel() for p in net.sigma_embed.parameters()) +
             sum(p.numel() for p in net.adaln_final.parameters())}
    assert parts == {"embed": 7_813_632, "blocks": 3_945_472, "head": 7_844_410, "cond": 115_456}
    assert sum(p.numel() for p in net.parameters()) == 19_718_970
    # forward + backward of a 64 x 32 batch with the head at every position (MDLM's code): ~1.36e11, 71% of it
    # the V-way head; elfctl runs the head at the masked positions only: half of them on average
    step = 3 * forward_flops(net, 64, 32)
    assert step == pytest.approx(1.36e11, rel=0.01)
    assert 3 * 2 * 64 * 32 * 256 * 30522 / step == pytest.approx(0.71, abs=0.01)
    from elfctl.config import load_config
    from elfctl.family import load_family

    cfg = load_config("quickstart-mdlm")
    head = 3 * 2 * 64 * 32 * 256 * 30522
    assert load_family("mdlm").train_flops(net, cfg) == pytest.approx(step - head / 2, rel=1e-3)


def test_time_conditioning_off_makes_the_output_independent_of_sigma():
    torch.manual_seed(6)
    net = DiT(12, depth=2, hidden_size=16, num_heads=2, cond_dim=8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ids = torch.randint(0, 12, (2, 5))
    assert torch.equal(net(ids, torch.tensor([0.1, 3.0])), net(ids, torch.zeros(2)))
    net.time_conditioning = True
    assert not torch.allclose(net(ids, torch.tensor([0.1, 3.0])), net(ids, torch.zeros(2)))


# ------------------------------------------------------------------------------------------------ end to end
def test_train_sample_and_nelbo_through_the_commands(tiny_recipe, tmp_path, capsys):
    from elfctl.cli import main

    recipe = tiny_recipe("model:\n  family: mdlm\n  preset: elf-tiny\n  depth: 1\n  hidden_size: 16\n"
                         "  num_heads: 2\nsample:\n  sampler: ddpm_cache\n  steps: 5\n  num_samples: 3\n"
                         "  batch_size: 2\n")
    assert main(["train", recipe]) == 0
    run = tmp_path / "run"
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out), "--trajectory", "0,2"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    head, rows = lines[0], lines[1:]
    assert head["family"] == "mdlm" and head["sampler"]["sampler"] == "ddpm_cache"
    assert head["sampler"]["categorical_dtype"] == "float64" and head["sampler"]["noise_removal"] == "greedy"
    assert "gamma" not in head["sampler"] and head["nfe"] <= 5 + 1
    vocab_rows = json.loads((run / "checkpoints" / "step_00000003" / "meta.json").read_text())["vocab_size"]
    mask_id = vocab_rows - 1                                         # the word tokenizer has no mask: appended
    assert len(rows) == 3 and all(mask_id not in r["token_ids"] for r in rows)
    assert all([s["step"] for s in r["trajectory"]] == [0, 2] for r in rows)
    assert any("[MASK]" in s["text"] for r in rows for s in r["trajectory"])
    assert main(["eval", str(out), "--metric", "nelbo", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["nelbo"]["ppl"] == pytest.approx(math.exp(res["nelbo"]["nll"])) and res["nelbo"]["tokens"] > 0
    # an ELF sampler name on an MDLM model: one line, exit 2
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--sampler", "ode", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "not a sampler of model.family mdlm" in capsys.readouterr().err
    assert main(["sample", "--run", str(run), "--gamma", "1.5", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "the ddpm_cache sampler has no churn" in capsys.readouterr().err
    assert main(["eval", str(out), "--metric", "nelbo,diversity", "--out", str(tmp_path / "e2.json")]) == 0

"""Text encoders: the 3-D condition mask really reaches BERT's and T5's attention; modes; normalisation; stats."""

import pytest
import torch

from elfctl.config import load_config
from elfctl.data.encoders import build_encoder, measure_latent_stats
from elfctl.data.tokenize import encoder_attention_mask, load_tokenizer


class _Vocab:
    """Just enough of a tokenizer for build_encoder: its length."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    from transformers import T5Config

    path = tmp_path_factory.mktemp("tiny_t5")
    T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4).save_pretrained(path)
    return path


def _encoders(tiny_encoder_dir, tiny_t5_dir):
    bert_cfg = load_config(None, [f"encoder.source={tiny_encoder_dir}"]).encoder
    t5_cfg = load_config(None, [f"encoder.source={tiny_t5_dir}", "encoder.mode=random"]).encoder
    return {"bert": build_encoder(bert_cfg, load_tokenizer(bert_cfg)), "t5": build_encoder(t5_cfg, _Vocab(40))}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["bert", "t5"])
def test_condition_mask_reaches_attention(tiny_encoder_dir, tiny_t5_dir, arch, attn):
    enc = _encoders(tiny_encoder_dir, tiny_t5_dir)[arch]
    enc.body.set_attn_implementation(attn)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 9, 10, 11, 12]])
    am = torch.ones(2, 8, dtype=torch.bool)
    am[1, 6:] = False
    cm = torch.zeros(2, 8, dtype=torch.bool)
    cm[:, :3] = True
    mask = encoder_attention_mask(am, cm)
    base = enc(ids, mask)
    tgt = ids.clone()
    tgt[:, 4] = 20                                            # change a target token
    assert torch.allclose(base[:, :3], enc(tgt, mask)[:, :3], atol=1e-5)      # condition blind to the target
    cond = ids.clone()
    cond[:, 0] = 21                                           # change a condition token
    assert not torch.allclose(base[:, 3:6], enc(cond, mask)[:, 3:6], atol=1e-4)  # target sees the condition
    drop = torch.tensor([True, False])
    dmask = encoder_attention_mask(am, cm, drop)
    a, b = enc(ids, dmask), enc(cond, dmask)
    assert torch.allclose(a[0, 3:], b[0, 3:], atol=1e-5)     # label drop: target independent of the condition
    assert not torch.allclose(a[1, 3:6], b[1, 3:6], atol=1e-4)  # ...only in the dropped row
    pad = ids.clone()
    pad[1, 6:] = 22                                           # padding never leaks into valid positions
    assert torch.allclose(base[1, :6], enc(pad, mask)[1, :6], atol=1e-5)
    assert base.dtype == torch.float32 and base.shape == (2, 8, enc.latent_dim)
    assert torch.isfinite(base).all()


def test_modes_trainability_and_fixed_random_init(tiny_encoder_dir):
    src = f"encoder.source={tiny_encoder_dir}"
    tok = load_tokenizer(load_config(None, [src]).encoder)
    rnd_cfg = load_config(None, [src, "encoder.mode=random"]).encoder
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    r1 = build_encoder(rnd_cfg, tok)
    assert torch.equal(torch.rand(3), before)                 # building leaves the global RNG alone
    r2 = build_encoder(rnd_cfg, tok)
    ids, am = torch.tensor([[3, 4, 5]]), torch.ones(1, 3, dtype=torch.bool)
    assert torch.equal(r1(ids, am), r2(ids, am))              # same seed, same encoder
    assert not r1.trainable and not any(p.requires_grad for p in r1.parameters())
    learned = build_encoder(load_config(None, [src, "encoder.mode=learned"]).encoder, tok)
    assert learned.trainable and learned.vocab_size == len(tok) and learned.latent_dim == 16
    assert any(p.requires_grad for p in learned.parameters())
    pre = build_encoder(load_config(None, [src]).encoder, tok)
    pre.train()
    assert not pre.body.training                              # a frozen encoder stays in eval mode
    assert pre.vocab_size == len(tok)


def test_random_mode_from_architecture_config(tiny_encoder_dir, tmp_path):
    from elfctl.data import assets

    arch = assets.resolve_asset("builtin:t5-small-config", data_dir=str(tmp_path))
    import json

    cfg = json.loads((arch / "config.json").read_text())
    assert (cfg["d_model"], cfg["num_layers"], cfg["num_heads"], cfg["d_kv"], cfg["d_ff"], cfg["vocab_size"]) == \
        (512, 6, 8, 64, 2048, 32128)
    small = tmp_path / "t5s"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({**cfg, "d_model": 8, "d_ff": 16, "num_layers": 1, "num_heads": 2,
                                                   "d_kv": 4}))
    enc_cfg = load_config(None, [f"encoder.source={tiny_encoder_dir}", "encoder.mode=random",
                                 f"encoder.architecture={small}"]).encoder
    tok = load_tokenizer(enc_cfg)
    enc = build_encoder(enc_cfg, tok)
    assert enc.latent_dim == 8 and enc.vocab_size == len(tok)
    assert enc(torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.bool)).shape == (1, 2, 8)


def test_normalisation_and_measured_stats(tiny_encoder_dir):
    src = f"encoder.source={tiny_encoder_dir}"
    tok = load_tokenizer(load_config(None, [src]).encoder)
    enc = build_encoder(load_config(None, [src, "encoder.latent_mean=0.25", "encoder.latent_std=0.5"]).encoder, tok)
    ids = torch.randint(3, len(tok), (4, 6), generator=torch.Generator().manual_seed(0))
    am = torch.ones(4, 6, dtype=torch.bool)
    am[:, 4:] = False
    raw = enc.raw(ids, am)
    assert torch.allclose(enc(ids, am), (raw - 0.25) / 0.5, atol=1e-6)
    mean, std, n = measure_latent_stats(enc, [{"input_ids": ids, "attention_mask": am}])
    v = raw[am].double()
    assert n == 16 and abs(mean - v.mean().item()) < 1e-6 and abs(std - v.std(unbiased=False).item()) < 1e-5

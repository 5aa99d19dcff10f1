"""Data: sequences and masks (ELF-METHOD §1), encoders and their attention masks, sources, cache (assets: test_data_assets.py)."""

import json

import pytest
import torch

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.data.encoders import build_encoder
from elfctl.data.text_sources import load_records, read_jsonl
from elfctl.data.tokenize import SequenceBuilder, decode_ids, encoder_attention_mask, load_tokenizer
from elfctl.errors import ConfigError


def _cfg(path, *over):
    return load_config(None, [f"encoder.source={path}", *over])


def test_unconditional_pad_truncate_and_eos(tiny_encoder_dir):
    cfg = _cfg(tiny_encoder_dir, "data.max_length=5")
    tok = load_tokenizer(cfg.encoder)
    b = SequenceBuilder(tok, cfg.data)
    short = b.text("the cat")
    assert short["input_ids"].tolist()[:3] == tok("the cat", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert short["attention_mask"].tolist() == [True, True, True, False, False]
    assert short["input_ids"].tolist()[3:] == [tok.pad_token_id] * 2
    long = b.text("the cat sat on the mat")
    assert long["input_ids"].tolist()[-1] == tok.eos_token_id and long["attention_mask"].all()
    assert b.stats.truncated == 1 and b.stats.examples == 2
    assert decode_ids(tok, short["input_ids"]) == "the cat"


def test_conditional_layout_masks_and_eos_padding(tiny_encoder_dir):
    cfg = _cfg(tiny_encoder_dir, "data.task=conditional", "data.max_length=10", "data.max_input_length=4",
               "data.pad_token=eos")
    tok = load_tokenizer(cfg.encoder)
    item = SequenceBuilder(tok, cfg.data).pair("the big red cat sat", "a dog")
    eos = tok.eos_token_id
    ids = item["input_ids"].tolist()
    # the authors' layout: condition truncated to max_input_length (4 words), then the target, then eos padding
    assert ids[:4] == tok("the big red cat", add_special_tokens=False)["input_ids"]
    assert ids[4:6] == tok("a dog", add_special_tokens=False)["input_ids"]
    assert ids[6:] == [eos] * 4
    assert item["cond_mask"].tolist() == [True] * 4 + [False] * 6
    # eos as pad: the padding is not a real token (never an encoder key); the objective still puts loss on it
    assert item["attention_mask"].tolist() == [True] * 6 + [False] * 4


def test_packing_fills_full_windows(tiny_encoder_dir):
    cfg = _cfg(tiny_encoder_dir, "data.max_length=4", "data.packing=true")
    tok = load_tokenizer(cfg.encoder)
    items = SequenceBuilder(tok, cfg.data).packed(["the cat sat", "a dog ran on the mat"])
    assert len(items) == 2 and all(it["attention_mask"].all() for it in items)


def test_encoder_attention_mask_by_hand():
    am = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    cm = torch.tensor([[1, 1, 0, 0, 0]], dtype=torch.bool)
    m = encoder_attention_mask(am, cm)[0].int().tolist()
    assert m[0] == [1, 1, 0, 0, 0] and m[1] == [1, 1, 0, 0, 0]   # condition sees condition only
    assert m[2] == [1, 1, 1, 1, 0] and m[3] == [1, 1, 1, 1, 0]   # target sees every valid token
    dropped = encoder_attention_mask(am, cm, torch.tensor([True]))[0].int().tolist()
    assert dropped[2] == [0, 0, 1, 1, 0]                           # label drop: target blind to the condition


def test_the_3d_mask_reaches_the_encoders_attention(tiny_encoder_dir):
    cfg = _cfg(tiny_encoder_dir)
    tok = load_tokenizer(cfg.encoder)
    enc = build_encoder(cfg.encoder, tok)
    ids = torch.tensor([tok("the cat sat on", add_special_tokens=False)["input_ids"]])
    am = torch.ones(1, 4, dtype=torch.bool)
    cm = torch.tensor([[True, True, False, False]])
    ids2 = ids.clone()
    ids2[0, 3] = tok.convert_tokens_to_ids("dog")   # change a target token
    a = enc(ids, encoder_attention_mask(am, cm))
    b = enc(ids2, encoder_attention_mask(am, cm))
    assert torch.allclose(a[0, :2], b[0, :2], atol=1e-6)          # the condition does not see the target
    ids3 = ids.clone()
    ids3[0, 0] = tok.convert_tokens_to_ids("dog")   # change a condition token
    c = enc(ids3, encoder_attention_mask(am, cm))
    assert not torch.allclose(a[0, 2:], c[0, 2:], atol=1e-4)      # the target sees the condition...
    drop = torch.tensor([True])
    d1 = enc(ids, encoder_attention_mask(am, cm, drop))
    d2 = enc(ids3, encoder_attention_mask(am, cm, drop))
    assert torch.allclose(d1[0, 2:], d2[0, 2:], atol=1e-6)        # ...unless the condition is dropped


def test_encoder_modes(tiny_encoder_dir):
    tok = load_tokenizer(_cfg(tiny_encoder_dir).encoder)
    pre = build_encoder(_cfg(tiny_encoder_dir).encoder, tok)
    rnd = build_encoder(_cfg(tiny_encoder_dir, "encoder.mode=random").encoder, tok)
    learned = build_encoder(_cfg(tiny_encoder_dir, "encoder.mode=learned").encoder, tok)
    ids, am = torch.tensor([[3, 4, 5]]), torch.ones(1, 3, dtype=torch.bool)
    assert not torch.allclose(pre(ids, am), rnd(ids, am))
    assert not pre.trainable and not rnd.trainable and learned.trainable
    assert not any(p.requires_grad for p in pre.parameters())
    assert learned(ids, am).requires_grad and learned.latent_dim == 16
    norm = build_encoder(_cfg(tiny_encoder_dir, "encoder.latent_mean=0.5", "encoder.latent_std=2.0").encoder, tok)
    assert torch.allclose(norm(ids, am), (pre(ids, am) * 0.2 - 0.5) / 2.0, atol=1e-5)  # pre uses std 0.2


def test_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(ConfigError, match=r"d.jsonl:2: malformed JSON"):
        read_jsonl(p, ("text",))
    p.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(ConfigError, match=r"d.jsonl:2: missing field 'text' \(fields present: body\)"):
        read_jsonl(p, ("text",))
    p.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_jsonl(p, ("text",))
    p.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        read_jsonl(p, ("text",))


def test_plain_text_and_splits(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("first paragraph\nstill first\n\nsecond one\n")
    cfg = load_config(None, [f"data.dataset={p}", "data.val_fraction=0.5"])
    train, val = load_records(cfg.data, "train"), load_records(cfg.data, "validation")
    assert sorted(r["text"] for r in train + val) == ["first paragraph still first", "second one"]


def test_encode_builds_a_cache_resumes_and_training_refuses_a_mismatch(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe()
    out = tmp_path / "cache"
    assert main(["encode", recipe, "data.shard_size=8", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["count"] == sum(s["count"] for s in manifest["shards"])
    # an interrupted run: drop the last shard from the manifest, leave a torn temp file; encode finishes it
    manifest["shards"] = manifest["shards"][:-1]
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / ".shard_00004.safetensors.tmp1").write_bytes(b"torn")
    assert main(["encode", recipe, "data.shard_size=8", "--out", str(out)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["complete"]
    assert main(["train", recipe, f"data.latent_cache={out}", "data.max_length=11"]) == 2
    assert "max_length" in capsys.readouterr().err

"""Text encoding in row chunks (a T5's (rows, heads, L, L) position bias and the (rows, 1, L, L) mask stay
bounded) and one encoding precision per run, recorded in the latent cache's manifest."""

import json

import pytest
import torch

from elfctl.config import load_config
from elfctl.data import encoders
from elfctl.data.encoders import encode_precision, rows_per_chunk
from elfctl.errors import ConfigError


def test_rows_per_chunk_by_hand():
    # t5-small at length 1024: (8 heads + 1 mask) · 1024² · 4 bytes = 36 MiB per row; 512 MiB / 36 MiB = 14.2
    assert rows_per_chunk(1024, 8) == 14
    assert rows_per_chunk(64, 8) == 512 * 2**20 // (64 * 64 * 9 * 4) == 3640
    assert rows_per_chunk(100_000, 8) == 1  # never zero


def test_encode_precision_is_one_rule():
    assert encode_precision(True, "cuda", True) == "bf16-autocast"
    assert encode_precision(True, "cuda:1", False) == "fp32"
    assert encode_precision(True, "cpu", True) == "fp32"
    assert encode_precision(False, "cuda", True) == "fp32"  # a learned encoder trains in fp32


def test_chunked_encoding_equals_one_forward(tiny_recipe, monkeypatch):
    from elfctl.data.tokenize import load_tokenizer

    cfg = load_config(tiny_recipe())
    tok = load_tokenizer(cfg.encoder)
    enc = encoders.build_encoder(cfg.encoder, tok).eval()
    torch.manual_seed(0)
    ids = torch.randint(3, len(tok), (7, 10))
    mask = torch.ones(7, 10, dtype=torch.bool)
    mask[2, 6:] = False
    whole = enc(ids, mask)
    rows = []
    real = enc.body.forward

    def recording(*args, **kwargs):
        rows.append(kwargs["input_ids"].shape[0])
        assert kwargs["attention_mask"].shape[0] == kwargs["input_ids"].shape[0]  # the mask is cut with its rows
        return real(*args, **kwargs)

    monkeypatch.setattr(enc.body, "forward", recording)
    per_row = 10 * 10 * (2 + 1) * 4  # the tiny BERT has 2 heads
    monkeypatch.setattr(encoders, "ENCODE_CHUNK_BYTES", 3 * per_row)
    chunked = enc(ids, mask)
    assert rows == [3, 3, 1]
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_cache_manifest_records_the_encoding_precision_and_refuses_to_mix(tiny_recipe, tmp_path, monkeypatch):
    from elfctl.cli import main
    from elfctl.data import encode_latents
    from elfctl.data.cache import read_manifest, write_manifest

    recipe = tiny_recipe()
    out = tmp_path / "c"
    assert main(["encode", recipe, "--out", str(out)]) == 0
    m = read_manifest(out)
    assert m["encode_precision"] == "fp32"  # the CPU's
    # an interrupted cache begun in another precision (a GPU with train.bf16): resuming here would mix them
    write_manifest(out, {**m, "complete": False, "encode_precision": "bf16-autocast"})
    cfg = load_config(recipe)
    with pytest.raises(ConfigError, match=r"^latent cache .* was begun in bf16-autocast and this run encodes in "
                                          r"fp32 \(device cpu, train.bf16 True\); finish it where it was begun"):
        encode_latents.encode_to_cache(cfg, out, split="train", echo=lambda s: None, progress=False)


def test_training_warns_when_a_cache_was_encoded_in_another_precision(tiny_recipe, tmp_path, capsys):
    from elfctl.cli import main
    from elfctl.data.cache import read_manifest, write_manifest

    cache = tmp_path / "c"
    recipe = tiny_recipe()
    assert main(["encode", recipe, "--out", str(cache)]) == 0
    write_manifest(cache, {**read_manifest(cache), "encode_precision": "bf16-autocast"})
    capsys.readouterr()
    assert main(["train", recipe, f"data.latent_cache={cache}", "train.steps=1"]) == 0
    out = capsys.readouterr().out
    assert f"warning: latent cache {cache} was encoded in bf16-autocast; this run encodes in fp32" in out

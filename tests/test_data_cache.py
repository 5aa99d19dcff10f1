"""The latent cache: contents, manifest checks, interrupted encodes that resume, and `encode --stats`."""

import json

import pytest
import torch

from elfctl.cli import main
from elfctl.config import load_config
from elfctl.data import cache as cache_mod
from elfctl.data.cache import LatentCacheDataset, check_manifest, read_manifest
from elfctl.errors import ConfigError


def _encode(recipe, out, *extra):
    return main(["encode", recipe, "data.shard_size=8", "--batch-size", "5", "--out", str(out), *extra])


def test_cache_holds_the_encoders_latents(tiny_recipe, tmp_path):
    from elfctl.data.dataset import build_dataset
    from elfctl.data.encoders import build_encoder
    from elfctl.data.tokenize import encoder_attention_mask, load_tokenizer

    recipe = tiny_recipe(conditional=True)
    out = tmp_path / "c"
    assert _encode(recipe, out, "--dtype", "float32") == 0
    m = read_manifest(out)
    assert m["complete"] and m["dtype"] == "float32" and m["max_length"] == 16 and m["task"] == "conditional"
    assert m["latent_dim"] == 16 and m["split"] == "train" and len(m["shards"]) == (m["count"] + 7) // 8
    cfg = load_config(recipe, ["data.shard_size=8"])
    check_manifest(m, cfg)
    ds = LatentCacheDataset(out)
    tok = load_tokenizer(cfg.encoder)
    ref = build_dataset(cfg, "train", tok)
    enc = build_encoder(cfg.encoder, tok)
    assert len(ds) == len(ref) == m["count"]
    for i in (0, 9, len(ds) - 1):
        item, r = ds[i], ref[i]
        assert set(item) == {"input_ids", "attention_mask", "cond_mask", "latents"}
        assert torch.equal(item["input_ids"], r["input_ids"]) and torch.equal(item["cond_mask"], r["cond_mask"])
        x = enc(r["input_ids"][None], encoder_attention_mask(r["attention_mask"][None], r["cond_mask"][None]))[0]
        assert torch.allclose(item["latents"], x, atol=1e-5)
    assert main(["encode", recipe, "--out", str(out), "--dtype", "float32"]) == 0  # complete: nothing to do


def test_manifest_mismatch_names_the_field(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe()
    out = tmp_path / "c"
    assert _encode(recipe, out) == 0
    m = read_manifest(out)
    cfg = load_config(recipe, ["encoder.latent_std=0.5"])
    with pytest.raises(ConfigError, match=r"latent_std is 1.0 in the cache but 0.5 in the recipe"):
        check_manifest(m, cfg)
    capsys.readouterr()
    assert _encode(recipe, out, "data.max_length=9") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_length is 12 in the cache but 9 in the recipe" in err
    assert _encode(recipe, out, "--dtype", "float32") == 2
    assert "--dtype" in capsys.readouterr().err


def test_interrupted_encode_resumes_and_partial_shards_never_count(tiny_recipe, tmp_path, monkeypatch, capsys):
    recipe = tiny_recipe()
    clean = tmp_path / "clean"
    assert _encode(recipe, clean) == 0
    out = tmp_path / "c"
    real_write = cache_mod.write_shard
    written = []

    def dying_write(path, index, tensors):
        if index == 2:  # die mid-write: a torn temp file is left behind, the manifest lists shards 0 and 1
            (path / f".shard_{index:05d}.safetensors.tmp999").write_bytes(b"torn")
            raise KeyboardInterrupt
        written.append(index)
        return real_write(path, index, tensors)

    monkeypatch.setattr(cache_mod, "write_shard", dying_write)
    assert _encode(recipe, out) == 130
    m = read_manifest(out)
    assert not m["complete"] and [s["file"] for s in m["shards"]] == ["shard_00000.safetensors",
                                                                     "shard_00001.safetensors"]
    with pytest.raises(ConfigError, match="incomplete"):
        LatentCacheDataset(out)
    # a shard renamed into place but never recorded in the manifest does not count either
    (out / "shard_00002.safetensors").write_bytes(b"renamed but unrecorded")
    monkeypatch.setattr(cache_mod, "write_shard", real_write)
    capsys.readouterr()
    assert _encode(recipe, out) == 0
    assert "resuming: 2 finished shards (16 examples) kept" in capsys.readouterr().out
    assert not list(out.glob(".shard_*"))
    a, b = LatentCacheDataset(out), LatentCacheDataset(clean)
    assert len(a) == len(b) == read_manifest(clean)["count"]
    for i in range(len(a)):
        assert all(torch.equal(a[i][k], b[i][k]) for k in b[i])


def test_missing_shard_is_a_config_error(tiny_recipe, tmp_path):
    out = tmp_path / "c"
    assert _encode(tiny_recipe(), out) == 0
    (out / "shard_00001.safetensors").unlink()
    with pytest.raises(ConfigError, match="shard_00001.safetensors is missing"):
        LatentCacheDataset(out)


def test_cache_dataset_pickles_for_dataloader_workers(tiny_recipe, tmp_path):
    import pickle

    out = tmp_path / "c"
    assert _encode(tiny_recipe(), out) == 0
    ds = LatentCacheDataset(out)
    first = ds[0]
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[0]["latents"], first["latents"]) and first["latents"].dtype == torch.float16


def test_encode_stats_prints_recipe_lines(tiny_recipe, tmp_path, capsys):
    assert main(["encode", tiny_recipe(), "--stats", "--stats-examples", "10"]) == 0
    out = capsys.readouterr().out
    assert "raw latent mean" in out and "latent_std:" in out and "latent_mean:" in out
    assert not (tmp_path / "run" / "latents").exists()


def test_encode_summary_counts_truncated_and_skipped(tiny_recipe, tiny_corpus, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                            ["the cat", "", "a dog sat on the big red mat and ran to the park", "   ", "a bird"]))
    out = tmp_path / "c"
    assert main(["encode", tiny_recipe(), f"data.dataset={data}", "data.val_fraction=0.0", "data.max_length=6",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 truncated" in text and "2 skipped" in text and "tok/s" in text and "peak RSS" in text
    m = read_manifest(out)
    assert m["truncated"] == 1 and m["skipped"] == 2


def test_train_precomputes_latents_and_trains_like_on_the_fly(tiny_recipe, tmp_path, capsys):
    """data.precompute_latents: train writes <run_dir>/latents first, then reads it; with float32-exact latents
    the losses match a run that encodes every batch on the fly."""
    recipe = tiny_recipe()
    cached, fly = tmp_path / "cached", tmp_path / "fly"
    assert main(["train", recipe, f"train.run_dir={cached}", "data.precompute_latents=true"]) == 0
    out = capsys.readouterr().out
    m = read_manifest(cached / "latents")
    assert m["complete"] and m["dtype"] == "float16" and f"latent cache {cached / 'latents'}" in out
    assert main(["train", recipe, f"train.run_dir={fly}"]) == 0
    assert "latent cache" not in capsys.readouterr().out

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    # float16 storage rounds the latents (relative error ~5e-4), nothing else differs
    assert losses(cached) == pytest.approx(losses(fly), rel=2e-3)
    # a second run finds the cache complete (and resumes training, here already finished)
    assert main(["train", recipe, f"train.run_dir={cached}", "data.precompute_latents=true"]) == 0
    assert "is complete" in capsys.readouterr().out


def test_precompute_is_skipped_for_a_learned_encoder(tiny_recipe, tmp_path, capsys):
    run = tmp_path / "learned"
    assert main(["train", tiny_recipe(), f"train.run_dir={run}", "data.precompute_latents=true",
                 "encoder.mode=learned"]) == 0
    assert "data.precompute_latents: skipped (a learned encoder's latents change while training)" in capsys.readouterr().out
    assert not (run / "latents").exists()

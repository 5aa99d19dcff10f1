"""The memory-mapped token cache (elfctl.data.tokenized), its streaming reader, save_to_disk and pre-tokenized
folders, and the DataLoader pipeline (resume mid-epoch with workers)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from elfctl.config import load_config
from elfctl.data import text_stream as ts
from elfctl.data.dataset import build_dataset, build_in_memory
from elfctl.data.loader import training_loader
from elfctl.data.text_sources import read_jsonl, read_plain
from elfctl.data.tokenize import load_tokenizer
from elfctl.errors import ConfigError
from elfctl.data.order import BatchOrder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402

KEYS = ("input_ids", "attention_mask", "cond_mask")


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """Token caches under tmp_path (built-in sets still come from the session's asset cache)."""
    root = tmp_path / "cache"
    monkeypatch.setattr("elfctl.data.tokenized.cache_root", lambda data_dir=None: root)
    return root


def _cfg(enc, *over):
    return load_config(None, [f"encoder.source={enc}", *over])


def _same_examples(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        for k in KEYS:
            assert torch.equal(x[k], y[k]), (i, k)


@pytest.mark.network
@pytest.mark.network  # the built-in sets' source files come from the package registry
@pytest.mark.parametrize("over", [
    ["data.dataset=builtin:wiki-leads", "data.max_length=24"],
    ["data.dataset=builtin:wiki-leads", "data.max_length=24", "data.packing=true"],
    ["data.dataset=builtin:news-summ", "data.task=conditional", "data.max_length=40", "data.max_input_length=30",
     "data.pad_token=eos"],
])
def test_arrow_dataset_gives_the_in_memory_batches_for_the_builtin_sets(tiny_encoder_dir, fresh_cache, over):
    cfg = _cfg(tiny_encoder_dir, *over)
    tok = load_tokenizer(cfg.encoder)
    arrow, ref = build_dataset(cfg, "train", tok), build_in_memory(cfg, "train", tok)
    assert len(arrow) > 1000 and list(fresh_cache.glob("tokenized/*/manifest.json"))
    _same_examples(arrow, ref)
    assert (arrow.stats.truncated, arrow.stats.skipped) == (ref.stats.truncated, ref.stats.skipped)
    # the training batches of the first steps, through the DataLoader with a worker
    order = BatchOrder(len(arrow), 8, 2, seed=3)
    loader = training_loader(arrow, order, start=0, stop=3, rank=0, grad_accum=2, num_workers=1)
    for n, batch in enumerate(loader):
        idx = order.indices(n // 2, n % 2)
        for k in KEYS:
            assert torch.equal(batch[k], torch.stack([ref[i][k] for i in idx]))
    # a second build reads the cache
    again = build_dataset(cfg, "train", tok)
    assert again.files == arrow.files and len(list(fresh_cache.glob("tokenized/*"))) == 1


def _write(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


@pytest.mark.parametrize("procs", [1, 2])
def test_packing_across_example_boundaries_by_hand(tiny_encoder_dir, fresh_cache, tmp_path, monkeypatch, procs):
    monkeypatch.setattr("elfctl.data.tokenized.STREAM_BATCH", 2)  # Arrow chunks of 2 records: windows cross them
    d = tmp_path / "c"
    d.mkdir()
    _write(d / "train.jsonl", ["the cat sat", "a dog", " ", "ran on the mat big", "it is"])
    cfg = _cfg(tiny_encoder_dir, f"data.dataset={d}", "data.max_length=4", "data.packing=true",
               f"data.tokenize_workers={procs}")
    tok = load_tokenizer(cfg.encoder)
    ds = build_dataset(cfg, "train", tok)
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sep = tok.eos_token_id
    # stream: the cat sat SEP | a dog SEP | ran on the mat big SEP | it is SEP  (16 tokens, blank skipped)
    want = [ids("the cat sat") + [sep], ids("a dog") + [sep] + ids("ran"), ids("on the mat big"),
            [sep] + ids("it is") + [sep]]
    assert [ds[i]["input_ids"].tolist() for i in range(len(ds))] == want
    assert all(ds[i]["attention_mask"].all() and not ds[i]["cond_mask"].any() for i in range(len(ds)))
    assert ds.stats.skipped == 1 and ds.stats.examples == 4
    with pytest.raises(IndexError):
        ds[4]


def test_packing_a_single_file_follows_its_shuffled_split_by_hand(tiny_encoder_dir, fresh_cache, tmp_path):
    import random

    texts = ["the cat", "a dog sat", "ran", "big red house", "it is"]
    p = _write(tmp_path / "one.jsonl", texts)
    cfg = _cfg(tiny_encoder_dir, f"data.dataset={p}", "data.max_length=3", "data.packing=true",
               "data.val_fraction=0.2", "data.split_seed=5")
    tok = load_tokenizer(cfg.encoder)
    perm = list(range(5))
    random.Random(5).shuffle(perm)  # text_sources' split: the first round(5 * 0.2) = 1 shuffled record is held out
    stream = []
    for i in perm[1:]:
        stream += tok(texts[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ds = build_dataset(cfg, "train", tok)
    assert [ds[i]["input_ids"].tolist() for i in range(len(ds))] == [stream[k:k + 3] for k in
                                                                     range(0, len(stream) - 2, 3)]


def test_single_file_split_and_max_examples_follow_text_sources(tiny_encoder_dir, fresh_cache, tmp_path):
    p = _write(tmp_path / "one.jsonl", [f"the cat {'sat ' * (i % 7)}on" for i in range(40)])
    for over in (["data.val_fraction=0.2"], ["data.val_fraction=0.2", "data.max_examples=9"]):
        cfg = _cfg(tiny_encoder_dir, f"data.dataset={p}", "data.max_length=6", *over)
        tok = load_tokenizer(cfg.encoder)
        for split in ("train", "validation"):
            _same_examples(build_dataset(cfg, split, tok), build_in_memory(cfg, split, tok))


@pytest.mark.parametrize("text", [
    "first paragraph\nstill first\n\nsecond one\n",
    "a\r\nb\r\n\r\nc\n",
    "\n\n  lead\n \nline two\n",
    "x\n\n\n\ny z\n\n",
    "one line\u2028two\x0bthree\n",
    "",
])
def test_streaming_plain_reader_matches_read_plain(tmp_path, text):
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode())
    cfg = load_config(None, [f"data.dataset={p}"])
    try:
        want = [r["text"] for r in read_plain(p)]
    except ConfigError as e:
        assert "empty" in str(e)
        want = []
    assert [r[0] for r in ts.file_records(p, cfg.data)] == want


def test_streaming_jsonl_errors_match_the_in_memory_reader(tmp_path):
    cfg = load_config(None, [])
    p = tmp_path / "d.jsonl"
    for body in (b'{"text": "a"}\n\n{"text": \n', b'{"text": "a"}\n{"body": "b"}\n', b'{"text": "ok"}\n{"text": "caf\xe9"}\n',
                 b'{"text": 3}\n', b'[1]\n'):
        p.write_bytes(body)
        with pytest.raises(ConfigError) as want:
            read_jsonl(p, ("text",))
        with pytest.raises(ConfigError) as got:
            list(ts.file_records(p, cfg.data))
        assert str(got.value) == str(want.value)


def test_a_save_to_disk_folder_loads(tiny_encoder_dir, fresh_cache, tmp_path):
    from datasets import Dataset, DatasetDict

    texts = ["the cat sat on the mat", "a dog ran", "   ", "big red house and tree and bird sings"]
    folder = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_dict({"text": texts}), "validation": Dataset.from_dict({"text": ["it is"]})}
                ).save_to_disk(str(folder))
    cfg = _cfg(tiny_encoder_dir, f"data.dataset={folder}", "data.max_length=5")
    tok = load_tokenizer(cfg.encoder)
    from elfctl.data.dataset import TokenDataset

    _same_examples(build_dataset(cfg, "train", tok), TokenDataset([{"text": t} for t in texts], tok, cfg.data))
    assert len(build_dataset(cfg, "validation", tok)) == 1
    with pytest.raises(ConfigError, match="no split 'test'"):
        build_dataset(cfg, "test", tok)


def test_a_pretokenized_folder_loads_as_the_authors_rows(tiny_encoder_dir, fresh_cache, tmp_path):
    from datasets import Dataset

    folder = tmp_path / "pretok"
    Dataset.from_dict({"condition_input_ids": [[5, 6, 7, 8], [9]], "input_ids": [[10, 11], [12, 13, 14, 15, 16]]}
                      ).save_to_disk(str(folder))
    cfg = _cfg(tiny_encoder_dir, "data.task=conditional", f"data.pretokenized={folder}", "data.max_length=6",
               "data.max_input_length=3", "data.pad_token=eos")
    tok = load_tokenizer(cfg.encoder)
    ds = build_dataset(cfg, "train", tok)
    eos = tok.eos_token_id
    # condition cut to max_input_length, then the target, cut to max_length, padded with eos (not valid)
    assert ds[0]["input_ids"].tolist() == [5, 6, 7, 10, 11, eos]
    assert ds[0]["cond_mask"].tolist() == [1, 1, 1, 0, 0, 0] and ds[0]["attention_mask"].tolist() == [1] * 5 + [0]
    assert ds[1]["input_ids"].tolist() == [9, 12, 13, 14, 15, 16]
    assert ds[1]["cond_mask"].tolist() == [1, 0, 0, 0, 0, 0] and ds[1]["attention_mask"].all()
    # unconditional + packing: the stored ids as they are, cut into full windows
    flat = tmp_path / "flat"
    Dataset.from_dict({"input_ids": [[3, 4, 5], [6, 7, 8, 9], [10]]}).save_to_disk(str(flat))
    cfg = _cfg(tiny_encoder_dir, f"data.pretokenized={flat}", "data.max_length=3", "data.packing=true")
    assert [build_dataset(cfg, "train", tok)[i]["input_ids"].tolist() for i in range(2)] == [[3, 4, 5], [6, 7, 8]]
    bad = tmp_path / "bad"
    Dataset.from_dict({"input_ids": [[3, 10_000]]}).save_to_disk(str(bad))
    with pytest.raises(ConfigError, match="another tokenizer"):
        build_dataset(_cfg(tiny_encoder_dir, f"data.pretokenized={bad}", "data.max_length=3"), "train", tok)


def test_an_uncached_pretokenized_hub_repo_offline_is_one_line(tiny_encoder_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cfg = _cfg(tiny_encoder_dir, "data.pretokenized=embedded-language-flows/openwebtext-t5")
    with pytest.raises(ConfigError) as e:
        build_dataset(cfg, "train", load_tokenizer(cfg.encoder))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("data.pretokenized: hub dataset 'embedded-language-flows/openwebtext-t5'")


def _losses(run_dir):
    return [(m["step"], m["loss"]) for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_resume_mid_epoch_with_workers_reproduces_the_run_without_workers(tmp_path):
    from elfctl.train.trainer import Trainer

    base = ["train.batch_size=8", "train.log_every=1", "train.save_every=4", "data.max_length=10",
            "model.preset=elf-tiny", "model.depth=1", "model.hidden_size=16", "model.num_heads=2",
            "optim.optimizer=adamw", "optim.lr=0.01"]
    quiet = lambda s: None  # noqa: E731

    def train(run_dir, steps, workers):
        cfg = load_config(None, base + [f"train.run_dir={run_dir}", f"train.steps={steps}",
                                        f"data.num_workers={workers}"])
        Trainer(cfg, data_source=SyntheticData, log=quiet).run()

    import shutil

    from elfctl.rundir import checkpoint as ckpt

    train(tmp_path / "ref", 9, 0)  # 48 examples: 6 steps per epoch
    train(tmp_path / "w", 9, 2)
    assert _losses(tmp_path / "ref") == _losses(tmp_path / "w")  # workers change nothing
    # back to the mid-epoch checkpoint of step 4, as if killed at step 5; resume across the epoch boundary
    for c in ckpt.list_checkpoints(tmp_path / "w"):
        if int(c.name.split("_")[-1]) > 4:
            shutil.rmtree(c)
    train(tmp_path / "w", 9, 2)
    assert _losses(tmp_path / "ref") == _losses(tmp_path / "w")
    assert [s for s, _ in _losses(tmp_path / "w")] == list(range(1, 10))


def test_two_gloo_ranks_with_workers_match_one_process_without(tmp_path):
    import os
    import socket
    import subprocess

    worker = str(Path(__file__).resolve().parent / "train_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["train.steps=3", "train.save_every=3"]
    subprocess.run([sys.executable, worker, str(tmp_path / "one"), "train.grad_accum=2", *common], check=True,
                   env=env, capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(port), worker, str(tmp_path / "two"), "data.num_workers=1",
                        *common], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    one, two = dict(_losses(tmp_path / "one")), dict(_losses(tmp_path / "two"))
    assert one.keys() == two.keys() == {1, 2, 3}
    assert all(one[s] == pytest.approx(two[s], rel=1e-5, abs=1e-6) for s in one)


def test_latents_are_cached_only_when_the_cache_fits(tiny_recipe, tmp_path):
    from elfctl.train.trainer import DataSource

    recipe = tiny_recipe()
    for limit, cached in ((1e-9, False), (1.0, True)):
        cfg = load_config(recipe, ["data.precompute_latents=true", f"data.max_latent_cache_gb={limit}"])
        lines: list[str] = []
        run = tmp_path / f"run{limit}"
        data = DataSource(cfg, run, torch.device("cpu"), log=lines.append)
        assert (data.cache_path is not None) == cached == (run / "latents" / "manifest.json").is_file()
        said = " ".join(lines)
        assert ("caching the latents" in said) == cached
        assert ("would take" in said and "encoding each batch on cpu" in said) == (not cached)

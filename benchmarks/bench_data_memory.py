"""Peak memory of `elfctl train` (data preparation + the first steps of a tiny model) against corpus size.

usage: python benchmarks/bench_data_memory.py --tokens 1e6 10e6 50e6 [--steps 50] [--workdir DIR] [--json OUT]

For each size it writes a synthetic local corpus (one JSONL file of documents of 100-1000 words; a word-level
tokenizer makes every word one token, so the token count is exact), a tiny word-level tokenizer and a 2-layer,
16-wide BERT encoder, and a recipe (elf-tiny at width 16, max_length 128, packing, batch 8), then runs
``python -m elfctl train`` in a fresh cache and samples the resident memory of the process tree every 50 ms.
Reported: peak RSS of the main process and peak summed RSS of the process tree (tokenizer and DataLoader
workers included; shared pages count once per process), each also as RssAnon (RSS without the pages of
memory-mapped files, which the kernel drops at will), the tree's summed PSS (what the tree really uses: a
forked worker's pages shared with its parent count once), and wall time. Set PYTHONPATH to measure another checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

WORDS = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in ("", "n", "r", "s", "l")]


def write_tokenizer_and_encoder(path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    if (path / "config.json").is_file():
        return
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]",
                                   eos_token="[SEP]")
    fast.save_pretrained(str(path))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(fast), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128)).save_pretrained(str(path))


def write_corpus(path: Path, tokens: int, seed: int = 0) -> int:
    """Documents of 100-1000 words until ``tokens`` tokens (words + one eos per document); returns documents."""
    if path.is_file():
        return sum(1 for _ in open(path, "rb"))
    rng = random.Random(seed)
    n_docs, total = 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while total < tokens:
            n = min(rng.randint(100, 1000), max(tokens - total - 1, 1))
            f.write(json.dumps({"text": " ".join(rng.choices(WORDS, k=n))}) + "\n")
            total += n + 1
            n_docs += 1
    os.replace(tmp, path)
    return n_docs


def recipe(path: Path, corpus: Path, encoder: Path, run_dir: Path, steps: int, extra: str = "") -> Path:
    text = (f"encoder:\n  source: {encoder}\n  latent_std: 1.0\n"
            f"data:\n  dataset: {corpus}\n  max_length: 128\n  packing: true\n  val_fraction: 0.001\n"
            f"model:\n  preset: elf-tiny\n  depth: 1\n  hidden_size: 16\n  num_heads: 2\n"
            f"optim:\n  optimizer: adamw\n  lr: 0.001\n"
            f"train:\n  steps: {steps}\n  batch_size: 8\n  save_every: {steps}\n  log_every: 10\n"
            f"  run_dir: {run_dir}\n" + extra)
    path.write_text(text)
    return path


def measure(cmd: list[str], env: dict) -> dict:
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    peak = {"main": 0, "tree": 0, "main_anon": 0, "tree_anon": 0, "tree_pss": 0}
    while proc.poll() is None:
        try:
            main, main_anon = rss_kib(proc.pid)
            tree, tree_anon, tree_pss = main, main_anon, pss_kib(proc.pid)
            for c in ps.children(recursive=True):
                r, a = rss_kib(c.pid)
                tree, tree_anon, tree_pss = tree + r, tree_anon + a, tree_pss + pss_kib(c.pid)
            for k, v in (("main", main), ("tree", tree), ("main_anon", main_anon), ("tree_anon", tree_anon),
                         ("tree_pss", tree_pss)):
                peak[k] = max(peak[k], v)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read().decode(errors="replace")
    return {"rc": proc.returncode, **{f"peak_rss_{k}_mib": round(v / 1024, 1) for k, v in peak.items()},
            "seconds": round(time.perf_counter() - t0, 1), "log_tail": out[-600:]}


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by n processes (forked workers) count 1/n in each, so the tree's sum
    is the memory it really uses (summed RSS counts every copy-on-write page once per process)."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process in KiB. RSS also counts the pages of memory-mapped files a process has
    read (the Arrow caches), which the kernel reclaims at will; RssAnon is the memory the process owns."""
    rss = anon = 0
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    except OSError:
        pass
    return rss, anon


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=float, nargs="+", default=[1e6, 10e6, 50e6])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--workdir", default="/tmp/elfctl-bench-data")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--extra", default="", help="extra YAML appended to the recipe (e.g. '  num_workers: 2' "
                                                "lines under a section header)")
    ap.add_argument("--set", nargs="*", default=[], help="section.key=value overrides for `elfctl train`")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    encoder = work / "encoder"
    encoder.mkdir(exist_ok=True)
    write_tokenizer_and_encoder(encoder)
    rows = []
    for t in args.tokens:
        n = int(t)
        corpus = work / f"corpus_{n}.jsonl"
        docs = write_corpus(corpus, n)
        tag = f"{n}-{int(time.time())}"
        run_dir, cache = work / f"run-{tag}", work / f"cache-{tag}"
        r = recipe(work / f"recipe-{tag}.yaml", corpus, encoder, run_dir, args.steps, args.extra)
        env = {**os.environ, "ELFCTL_CACHE": str(cache), "HF_DATASETS_CACHE": str(cache / "hf"),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        res = measure([sys.executable, "-m", "elfctl", "train", str(r), *args.set], env)
        row = {"label": args.label, "tokens": n, "documents": docs, "corpus_mib": round(corpus.stat().st_size / 2**20, 1),
               **res}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "log_tail"}), flush=True)
        if res["rc"] != 0:
            print(res["log_tail"], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Judge throughput: how fast Gen PPL scoring runs (scored tokens per second), load time apart.

    python benchmarks/bench_judge.py                                   # offline SmolLM2-135M judge, auto device
    python benchmarks/bench_judge.py --judge gpt2-large --dtype bfloat16 # the paper's judge, where it is cached
    python benchmarks/bench_judge.py --random gpt2-large --dtype bfloat16 --rows 64 --length 1024
                                                                       # GPT-2 Large size, random weights

With a judge, texts are real held-out text of the quickstart recipe's data (Wikipedia leads), so token counts are
those `elfctl eval --baselines` meets. ``--random ARCH`` times a randomly initialised GPT-2 of that size instead
(no download, no tokenizer: rows of random token ids of length L/2..L, as 1024-token samples give), through the
same scoring code (``elfctl.eval.genppl.score_rows``: batches sorted by length, float64 log-softmax in chunks).
The device is ``--device`` (default auto: the GPU when there is one). The first batch is a warm-up, not timed.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from elfctl.atomic import atomic_write_json
from elfctl.eval.genppl import Row, score_rows, score_texts
from elfctl.eval.judge import OFFLINE_JUDGE, Judge, judge_device, load_judge
from elfctl.eval.protocol import make_protocol, with_judge_tokens

# GPT-2 shapes (n_embd, n_layer, n_head); vocabulary 50,257, context 1024.
GPT2_SIZES = {"gpt2-large": (1280, 36, 20), "gpt2-medium": (1024, 24, 16), "gpt2": (768, 12, 12),
              "gpt2-tiny": (64, 2, 2)}


def random_judge(arch: str, dtype: str, device: torch.device) -> Judge:
    from transformers import GPT2Config, GPT2LMHeadModel

    n_embd, n_layer, n_head = GPT2_SIZES[arch]
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: GPT-2 Large is 774M parameters
        model = GPT2LMHeadModel(GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, vocab_size=50257,
                                           n_positions=1024)).to(getattr(torch, dtype)).eval()
    return Judge(f"random {arch}", model, None)


def random_rows(n: int, length: int, vocab: int = 50257) -> list[Row]:
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        k = int(torch.randint(length // 2, length + 1, (1,), generator=g))
        ids = torch.randint(0, vocab, (k,), generator=g).tolist()
        rows.append(Row(ids, [1] * (k - 1), ids[1:]))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", default=OFFLINE_JUDGE)
    ap.add_argument("--random", choices=sorted(GPT2_SIZES), default=None,
                    help="time a random-weight GPT-2 of this size on random token rows instead of --judge")
    ap.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--texts", type=int, default=64, help="number of texts scored (--judge)")
    ap.add_argument("--words", type=int, default=48, help="each text is cut to this many words (--judge)")
    ap.add_argument("--rows", type=int, default=64, help="number of rows scored (--random)")
    ap.add_argument("--length", type=int, default=1024, help="longest row (--random)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = judge_device(args.device)

    t0 = time.perf_counter()
    if args.random:
        judge = random_judge(args.random, args.dtype, device)
        load_s = time.perf_counter() - t0
        rows = random_rows(args.rows + args.batch_size, args.length)
        score_rows(rows[: args.batch_size], judge, batch_size=args.batch_size)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        scored = score_rows(rows[args.batch_size:], judge, batch_size=args.batch_size)
        sync(device)
        dt = time.perf_counter() - t0
        tokens, n = sum(k for _, k in scored), len(scored)
        name = judge.name
    else:
        from elfctl.config import load_config
        from elfctl.data.dataset import reference_texts

        cfg = load_config("quickstart", [])
        texts = [" ".join(r["text"].split()[: args.words])
                 for r in reference_texts(cfg, n=args.texts + args.batch_size)]
        judge = load_judge(args.judge, dtype=args.dtype, device=str(device))
        load_s = time.perf_counter() - t0
        protocol = with_judge_tokens(make_protocol("elf", args.judge, judge_dtype=args.dtype), eos=judge.eos_token)
        score_texts(texts[: args.batch_size], judge, protocol, batch_size=args.batch_size)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        scores = score_texts(texts[args.batch_size:], judge, protocol, batch_size=args.batch_size)
        sync(device)
        dt = time.perf_counter() - t0
        tokens, n = sum(s.n_scored for s in scores), len(scores)
        name = args.judge
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    row = {"judge": name, "device": where, "dtype": args.dtype, "batch_size": args.batch_size, "texts": n,
           "scored_tokens": tokens, "seconds": round(dt, 3), "tokens_per_s": round(tokens / dt, 1),
           "texts_per_s": round(n / dt, 2), "load_s": round(load_s, 2)}
    print(json.dumps(row))
    if args.json:
        atomic_write_json(args.json, row)


if __name__ == "__main__":
    main()

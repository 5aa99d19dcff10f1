"""Judge throughput: how fast Gen PPL scoring runs (scored tokens per second), load time apart.

    python benchmarks/bench_judge.py                                  # offline SmolLM2-135M judge, CPU
    python benchmarks/bench_judge.py --judge gpt2-large --device cuda # the paper's judge, where it is cached

Texts are real held-out text of the quickstart recipe's data (Wikipedia leads), so token counts are those
`elfctl eval --baselines` meets. The first batch is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from elfctl.eval.genppl import score_texts
from elfctl.eval.judge import OFFLINE_JUDGE, load_judge
from elfctl.eval.protocol import make_protocol, with_judge_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", default=OFFLINE_JUDGE)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--texts", type=int, default=64, help="number of texts scored")
    ap.add_argument("--words", type=int, default=48, help="each text is cut to this many words")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from elfctl.config import load_config
    from elfctl.data.dataset import reference_texts

    cfg = load_config("quickstart", [])
    texts = [" ".join(r["text"].split()[: args.words]) for r in reference_texts(cfg, n=args.texts + args.batch_size)]
    t0 = time.perf_counter()
    judge = load_judge(args.judge, dtype=args.dtype, device=args.device)
    load_s = time.perf_counter() - t0
    protocol = with_judge_tokens(make_protocol("elf", args.judge, judge_dtype=args.dtype), eos=judge.eos_token)
    score_texts(texts[: args.batch_size], judge, protocol, batch_size=args.batch_size)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    scores = score_texts(texts[args.batch_size:], judge, protocol, batch_size=args.batch_size)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = sum(s.n_scored for s in scores)
    row = {"judge": args.judge, "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
           "texts": len(scores), "scored_tokens": tokens, "seconds": round(dt, 3),
           "tokens_per_s": round(tokens / dt, 1), "texts_per_s": round(len(scores) / dt, 2),
           "load_s": round(load_s, 2)}
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()

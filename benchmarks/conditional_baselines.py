"""Two model-free baselines for a conditional recipe's held-out split, as samples files `elfctl eval` scores.

    python benchmarks/conditional_baselines.py quickstart-cond OUTDIR
    elfctl eval --metric rouge,bleu OUTDIR/first-sentence.jsonl
    elfctl eval --metric rouge,bleu OUTDIR/random.jsonl

* ``first-sentence``: the input's first sentence as the output (the "lead" baseline of news summarization);
* ``random``: uniform random ordinary tokens of the recipe's tokenizer (seed 0), as many as the reference has,
  capped at the tokens a model output keeps (``sample.max_new_tokens``, or max_length − max_input_length).

Both cover the recipe's whole held-out split, in order, with its references, so their scores sit beside a model's
samples of that split (``elfctl sample --run RUN --num-samples <split size>``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from elfctl.config import load_config
from elfctl.data.dataset import reference_texts
from elfctl.data.tokenize import load_tokenizer


def first_sentence(text: str) -> str:
    """Up to and including the first '.', '!' or '?' that ends a word (the whole text when there is none)."""
    m = re.search(r"(.+?[.!?])(\s|$)", text.strip())
    return (m.group(1) if m else text).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a conditional recipe (name or YAML path)")
    ap.add_argument("out", type=Path, help="folder for first-sentence.jsonl and random.jsonl")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides of the recipe")
    args = ap.parse_args()
    cfg = load_config(args.recipe, args.overrides)
    if cfg.data.task != "conditional":
        raise SystemExit(f"{args.recipe}: not a conditional recipe (data.task is {cfg.data.task})")
    tok = load_tokenizer(cfg.encoder)
    held = reference_texts(cfg)
    special = set(tok.all_special_ids)
    ordinary = [i for i in range(len(tok)) if i not in special]
    rng = random.Random(0)
    keep = cfg.sample.max_new_tokens or cfg.data.max_length - cfg.data.max_input_length
    lengths = [min(len(tok(r["output"], add_special_tokens=False)["input_ids"]), keep) for r in held]
    outputs = {
        "first-sentence": [first_sentence(r["input"]) for r in held],
        "random": [tok.decode([rng.choice(ordinary) for _ in range(n)], skip_special_tokens=True) for n in lengths],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, texts in outputs.items():
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r, text in zip(held, texts):
                f.write(json.dumps({"text": text, "reference": r["output"], "input": r["input"]}) + "\n")
    print(f"{len(held)} held-out examples of {cfg.data.dataset}; random outputs of the references' token lengths "
          f"(mean {sum(lengths) / max(1, len(lengths)):.1f}, capped at {keep}) -> {args.out}")


if __name__ == "__main__":
    main()

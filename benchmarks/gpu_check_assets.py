"""Offline inputs for ``gpu_check``'s real ``elfctl train`` / ``elfctl sample`` steps, made in code (no hub, no
registry: the lent GPU machine reaches no network).

    python3 benchmarks/gpu_check_assets.py DIR --size gpu|cpu

Writes into DIR:

* ``tokenizer/``  a word-level tokenizer (``gpu``: 32,100 entries, T5-small's vocabulary size; ``cpu``: 40);
* ``encoder/``    an encoder *config* only, trained with ``encoder.mode=random`` (frozen random weights of that
  shape): ``gpu`` T5-small's (width 512, so ELF-B sees the paper's latent width), ``cpu`` a 2-layer 16-wide BERT;
* ``corpus.jsonl`` random words from that vocabulary, enough packed windows for a few steps;
* ``gpu_check.yaml`` a recipe that ``extends: owt`` (the shipped recipe must resolve from the installed package)
  and points it at the above: ``gpu`` keeps ELF-B at length 1024 in bf16, ``cpu`` shrinks everything.

Prints the recipe's path.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SIZES = {
    # vocabulary, documents, words per document, model overrides, length, global batch
    "gpu": dict(vocab=32100, docs=160, words=480, length=1024, batch=16,
                model=["preset: elf-b"]),
    "cpu": dict(vocab=40, docs=60, words=40, length=32, batch=4,
                model=["preset: elf-tiny", "depth: 1", "hidden_size: 16", "num_heads: 2", "bottleneck_dim: 8"]),
}


def make_tokenizer(path: Path, vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(vocab - 3)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(path))
    return words[3:]


def encoder_config(size: str, vocab: int) -> dict:
    from elfctl.data.assets import T5_SMALL_CONFIG

    if size == "gpu":
        return dict(T5_SMALL_CONFIG)
    return {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64, "pad_token_id": 0}


def make(out: Path, size: str) -> Path:
    s = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    words = make_tokenizer(out / "tokenizer", s["vocab"])
    (out / "encoder").mkdir(exist_ok=True)
    (out / "encoder" / "config.json").write_text(json.dumps(encoder_config(size, s["vocab"]), indent=1))
    rng = random.Random(0)
    with open(out / "corpus.jsonl", "w") as f:
        for _ in range(s["docs"]):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(s["words"]))}) + "\n")
    model = "\n".join(f"  {line}" for line in s["model"])
    recipe = out / "gpu_check.yaml"
    recipe.write_text(
        f"# written by benchmarks/gpu_check_assets.py ({size}): the owt recipe on offline inputs\n"
        f"extends: owt\n"
        f"model:\n{model}\n"
        f"encoder:\n  source: {out / 'encoder'}\n  tokenizer: {out / 'tokenizer'}\n  mode: random\n"
        f"data:\n  dataset: {out / 'corpus.jsonl'}\n  pretokenized: null\n  max_length: {s['length']}\n"
        f"  data_dir: {out / 'cache'}\n  val_fraction: 0.05\n"
        f"optim:\n  warmup_epochs: null\n  warmup_steps: 1\n"
        f"train:\n  epochs: null\n  steps: 3\n  batch_size: {s['batch']}\n  save_every: 3\n  log_every: 1\n"
        f"sample:\n  num_samples: {s['batch']}\n  batch_size: {s['batch']}\n")
    return recipe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    args = ap.parse_args(argv)
    print(make(args.out.resolve(), args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: a tiny word-level tokenizer and a tiny BERT encoder saved to disk, built in code."""

import json

import pytest

WORDS = ("the a cat dog sat ran on mat park big small red blue house tree bird sings fast slow and is was "
         "of to in it he she they we you").split()


def make_tokenizer_dir(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]",
                                   eos_token="[SEP]")
    fast.save_pretrained(str(path))
    return fast


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """A directory with a 2-layer, 16-wide BERT and a word-level tokenizer (loads like a hub checkpoint)."""
    import torch
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    tok = make_tokenizer_dir(path)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=64))
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus")
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(40)]
    with open(path / "text.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    with open(path / "pairs.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"input": t, "output": " ".join(t.split()[:2])}) + "\n")
    return path


@pytest.fixture
def tiny_recipe(tmp_path, tiny_encoder_dir, tiny_corpus):
    """Write a tiny unconditional recipe; returns a function taking extra YAML text."""

    def make(extra: str = "", conditional: bool = False) -> str:
        data = (f"  dataset: {tiny_corpus / 'pairs.jsonl'}\n  task: conditional\n  max_length: 16\n"
                f"  max_input_length: 10\n  pad_token: eos\n" if conditional else
                f"  dataset: {tiny_corpus / 'text.jsonl'}\n  max_length: 12\n")
        text = (f"encoder:\n  source: {tiny_encoder_dir}\n  latent_std: 1.0\ndata:\n{data}"
                f"model:\n  preset: elf-tiny\n  depth: 1\n  hidden_size: 16\n  num_heads: 2\n"
                f"optim:\n  optimizer: adamw\n  lr: 0.003\n"
                f"train:\n  steps: 3\n  batch_size: 4\n  save_every: 3\n  log_every: 1\n  run_dir: {tmp_path / 'run'}\n"
                f"sample:\n  steps: 3\n  num_samples: 3\n  batch_size: 2\n" + extra)
        p = tmp_path / "tiny.yaml"
        p.write_text(text)
        return str(p)

    return make

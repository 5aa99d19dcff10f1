"""Evaluation: Gen PPL by hand on a fake judge, batch/padding invariance, entropy, BLEU/ROUGE, inputs."""

import json
import math
import random

import pytest
import torch

from elfctl.cli import main
from elfctl.eval import report
from elfctl.eval.diversity import diversity
from elfctl.eval.genppl import aggregate, score_texts, unigram_entropy
from elfctl.eval.judge import Judge
from elfctl.eval.protocol import make_protocol
from elfctl.eval.text_metrics import bleu, rouge

from conftest import make_tokenizer_dir


class UniformLM(torch.nn.Module):
    """Every next token has probability 1/V: the NLL of each scored token is exactly ln V."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.vocab) + self.w})()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer_dir(tmp_path_factory.mktemp("judge_tok"))


def test_genppl_by_hand_on_a_uniform_judge(tok):
    judge = Judge("fake", UniformLM(len(tok)), tok)
    proto = make_protocol("elf", "fake")
    scores = score_texts(["the cat sat", "a dog"], judge, proto)
    assert [s.n_scored for s in scores] == [2, 1]                 # every token after the first
    assert scores[0].nll_sum == pytest.approx(2 * math.log(len(tok)))
    assert aggregate(scores)["genppl"] == pytest.approx(len(tok))


def test_first_eos_counts_and_nothing_after_it(tok):
    judge = Judge("fake", UniformLM(len(tok)), tok)
    s = score_texts(["the cat [SEP] dog dog dog"], judge, make_protocol("elf", "fake"))[0]
    assert s.n_scored == 2                                         # 'cat' and the first eos
    m = score_texts(["the cat [SEP] dog dog dog"], judge, make_protocol("mdlm", "fake"))[0]
    assert m.n_scored == 5                                         # mdlm: scored whole


def test_truncation_to_max_length(tok):
    judge = Judge("fake", UniformLM(len(tok)), tok)
    long = " ".join(["cat"] * 30)
    assert score_texts([long], judge, make_protocol("elf", "fake", max_length=8))[0].n_scored == 7
    assert score_texts([long], judge, make_protocol("mdlm", "fake", max_length=8))[0].n_scored == 30 - 4


def test_batch_size_and_padding_do_not_change_the_result(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=64)).eval()
    judge = Judge("tiny-gpt2", lm, tok)
    rng = random.Random(1)
    words = "the a cat dog sat ran on mat park big".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) for _ in range(7)]
    proto = make_protocol("elf", "tiny-gpt2")
    one = aggregate(score_texts(texts, judge, proto, batch_size=1))
    three = aggregate(score_texts(texts, judge, proto, batch_size=3))
    assert one["genppl"] == pytest.approx(three["genppl"], rel=1e-9)
    assert one["scored_tokens"] == three["scored_tokens"]


def test_entropy_by_hand():
    assert unigram_entropy([1, 1, 2]) == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert unigram_entropy([5, 5, 5]) == 0.0


def test_bleu_and_rouge_follow_the_libraries():
    import sacrebleu
    from rouge_score import rouge_scorer

    hyps, refs = ["The cat sat on the mat", "a dog ran"], ["the cat sat on a mat", "a dog runs fast"]
    assert bleu(hyps, refs) == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], lowercase=True, use_effective_order=True).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    want = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / 2 * 100
    assert rouge(hyps, refs)["rougeL"] == pytest.approx(want)


def test_diversity_by_hand():
    d = diversity(["a b a b a", ""])
    assert d["distinct_1"] == pytest.approx(2 / 5) and d["empty_samples"] == 1
    assert d["repetition_4gram"] == 0.0  # its two 4-grams (a b a b), (b a b a) differ
    # "a b c" three times: 6 four-grams, 3 distinct -> half of them repeat an earlier one
    assert diversity(["a b c a b c a b c"])["repetition_4gram"] == pytest.approx(0.5)


def test_protocol_hash_is_stable_and_distinguishes_rules():
    a, b = make_protocol("elf", "gpt2-large"), make_protocol("mdlm", "gpt2-large")
    assert a.hash == make_protocol("elf", "gpt2-large").hash and a.hash != b.hash


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"\n\n", "empty file"),
    (b"caf\xe9\n", "not UTF-8"),
])
def test_bad_sample_files(tmp_path, capsys, content, message):
    p = tmp_path / "s.txt"
    p.write_bytes(content)
    assert main(["eval", "--metric", "diversity", "--samples", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_all_empty_samples_unknown_metric_and_count_mismatch(tmp_path, capsys):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": " "}) + "\n")
    assert main(["eval", "--metric", "diversity", "--samples", str(p)]) == 2
    assert "all 2 samples are empty" in capsys.readouterr().err
    q = tmp_path / "h.json"
    q.write_text(json.dumps(["a cat", "a dog"]))
    assert main(["eval", "--metric", "perplexity", "--samples", str(q)]) == 2
    assert "choose from genppl, entropy, bleu, rouge, diversity, all" in capsys.readouterr().err
    r = tmp_path / "r.txt"
    r.write_text("one ref\n")
    assert main(["eval", "--metric", "bleu", "--samples", str(q), "--references", str(r)]) == 2
    assert "2 hypotheses but 1 references" in capsys.readouterr().err


def test_bleu_from_the_cli_writes_results(tmp_path):
    q = tmp_path / "h.json"
    q.write_text(json.dumps(["the cat sat", "a dog ran"]))
    r = tmp_path / "r.txt"
    r.write_text("the cat sat\na dog ran\n")
    out = tmp_path / "res.json"
    assert main(["eval", "--metric", "bleu,diversity", "--samples", str(q), "--references", str(r),
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["bleu"] == pytest.approx(100.0) and "protocol_hash" in res and res["diversity"]["empty_samples"] == 0


@pytest.mark.slow
def test_offline_judge_scores_real_text_far_below_shuffled_text():
    text = ("The city is the capital of the province and lies on the northern bank of the river. It was founded in "
            "the twelfth century and became an important trading centre during the Middle Ages.")
    words = text.split()
    random.Random(0).shuffle(words)
    shuffled = " ".join(words)
    res = report.score_samples([_samples([text] * 2)], ["genppl"], judge_source="builtin:smollm2-135m",
                               bootstrap=0)
    res_shuf = report.score_samples([_samples([shuffled] * 2)], ["genppl"], judge_source="builtin:smollm2-135m",
                                    bootstrap=0)
    real, shuf = res["rows"]["model"]["genppl"], res_shuf["rows"]["model"]["genppl"]
    assert real < 60 and shuf > 5 * real
    assert "offline judge" in res["judge_label"]


def _samples(texts):
    from pathlib import Path

    from elfctl.eval.inputs import Samples

    return Samples(Path("mem"), texts, {}, [None] * len(texts))

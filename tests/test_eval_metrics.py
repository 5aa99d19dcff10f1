"""BLEU/ROUGE against the libraries directly, diversity and spread by hand."""

import math
import statistics

import pytest

from elfctl.eval.diversity import diversity
from elfctl.eval.spread import bootstrap_mean, bootstrap_ppl, mean_std
from elfctl.eval.text_metrics import bleu, rouge

HYPS = ["The cat sat on the mat", "a dog ran in the park", "birds sing"]
REFS = ["the cat sat on a mat", "a dog runs fast in a park", "the birds are singing"]


def test_bleu_is_sacrebleu_corpus_bleu_lowercase_effective_order():
    import sacrebleu

    want = sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True, use_effective_order=True).score
    assert bleu(HYPS, REFS) == pytest.approx(want)
    assert bleu(["THE CAT"], ["the cat"]) == pytest.approx(100.0)         # lowercase
    assert bleu(["the cat"], ["the cat sat"]) > 0                          # effective order: 2 words still score


def test_rouge_is_rouge_score_f_stemmed_times_100_averaged():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    got = rouge(HYPS, REFS)
    for k in ("rouge1", "rouge2", "rougeL"):
        want = statistics.fmean(scorer.score(r, h)[k].fmeasure for h, r in zip(HYPS, REFS)) * 100
        assert got[k] == pytest.approx(want)
    assert rouge(["dogs running"], ["dog runs"])["rouge1"] == pytest.approx(100.0)   # stemming


def test_diversity_by_hand():
    d = diversity(["a b a b a", ""])
    assert d["distinct_1"] == pytest.approx(2 / 5) and d["distinct_2"] == pytest.approx(2 / 4)
    assert d["distinct_3"] == pytest.approx(2 / 3)
    assert d["empty_samples"] == 1
    assert d["repetition_4gram"] == 0.0               # its two 4-grams (a b a b), (b a b a) differ
    # "a b c" three times: 6 four-grams, 3 distinct -> half of them repeat an earlier one
    assert diversity(["a b c a b c a b c"])["repetition_4gram"] == pytest.approx(0.5)
    h = diversity(["one two", " ".join(["w"] * 15), " ".join(["w"] * 200)])["length_histogram"]
    assert h == {"0-9": 1, "10-19": 1, "100+": 1}


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    sums = [10.0, 30.0, 12.0, 25.0, 14.0, 40.0, 9.0, 22.0]
    counts = [5, 10, 6, 9, 7, 12, 4, 8]
    lo, hi = bootstrap_ppl(sums, counts, resamples=500, seed=3)
    assert (lo, hi) == bootstrap_ppl(sums, counts, resamples=500, seed=3)
    point = math.exp(sum(sums) / sum(counts))
    assert lo < point < hi
    assert bootstrap_ppl(sums, counts, resamples=500, seed=4) != (lo, hi)
    assert all(math.isnan(x) for x in bootstrap_ppl(sums, counts, resamples=0))
    mlo, mhi = bootstrap_mean([1.0, 2.0, 3.0, 4.0], resamples=200)
    assert 1.0 <= mlo < 2.5 < mhi <= 4.0


def test_mean_std_over_seeds_by_hand():
    m, s = mean_std([10.0, 12.0, 14.0])
    assert m == pytest.approx(12.0) and s == pytest.approx(2.0)       # sample std (n - 1)
    assert mean_std([5.0]) == (5.0, 0.0)

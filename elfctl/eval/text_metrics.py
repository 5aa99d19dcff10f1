"""BLEU (sacreBLEU corpus BLEU, lowercase, effective order) and ROUGE-1/2/L (rouge-score F, stemming, ×100).

Both follow the paper's evaluation and the authors' ``metrics_utils``: one reference per hypothesis; ROUGE is the
mean over pairs of each pair's F-measure (``scorer.score(reference, hypothesis)``), times 100.
"""

from __future__ import annotations

from typing import Sequence

from elfctl.optional import require

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    sacrebleu = require("sacrebleu", "BLEU (--metric bleu)")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], lowercase=True,
                                       use_effective_order=True).score)


def rouge_per_sample(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    rouge_scorer = require("rouge_score.rouge_scorer", "ROUGE (--metric rouge)")

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out: dict[str, list[float]] = {k: [] for k in ROUGE_TYPES}
    for hyp, ref in zip(hypotheses, references):
        s = scorer.score(ref, hyp)
        for k in ROUGE_TYPES:
            out[k].append(s[k].fmeasure * 100)
    return out


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    per = rouge_per_sample(hypotheses, references)
    n = max(len(hypotheses), 1)
    return {k: sum(v) / n for k, v in per.items()}

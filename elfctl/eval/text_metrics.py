"""BLEU (sacreBLEU corpus BLEU, lowercase, effective order) and ROUGE-1/2/L (rouge-score F, stemming, ×100)."""

from __future__ import annotations


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True, use_effective_order=True).score


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hypotheses, references):
        s = scorer.score(ref, hyp)
        for k in totals:
            totals[k] += s[k].fmeasure * 100
    n = max(len(hypotheses), 1)
    return {k: v / n for k, v in totals.items()}

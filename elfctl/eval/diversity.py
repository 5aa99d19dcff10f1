"""Diversity and failure counts of samples: distinct-n, repetition, empties, lengths (whitespace tokens)."""

from __future__ import annotations

from collections import Counter


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def diversity(texts: list[str]) -> dict:
    words = [t.split() for t in texts]
    out: dict = {}
    for n in (1, 2, 3):
        grams = [g for w in words for g in _ngrams(w, n)]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    # repetition: fraction of a sample's 4-grams that repeat an earlier 4-gram of the same sample, averaged
    reps = []
    for w in words:
        g = _ngrams(w, 4)
        if g:
            reps.append(1 - len(set(g)) / len(g))
    out["repetition_4gram"] = sum(reps) / len(reps) if reps else 0.0
    out["empty_samples"] = sum(1 for t in texts if not t.strip())
    lengths = [len(w) for w in words]
    out["mean_length_words"] = sum(lengths) / len(lengths) if lengths else 0.0
    bins = Counter(min(n // 10, 10) * 10 for n in lengths)
    out["length_histogram"] = {(f"{b}-{b + 9}" if b < 100 else "100+"): bins[b] for b in sorted(bins)}
    return out

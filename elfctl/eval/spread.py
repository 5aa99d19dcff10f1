"""Spread of a metric: a seeded percentile bootstrap 95% interval over samples, and mean ± std over seeds.

A single samples file gets the bootstrap interval (samples resampled with replacement, ``resamples`` times, with
``numpy.random.default_rng(seed)``; the corpus statistic recomputed each time — for Gen PPL the token-weighted
``exp(sum NLL / sum tokens)`` of the resampled samples). Several files (one per sampling seed) get the mean and
the sample standard deviation (n - 1) of the per-file numbers.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Sequence

import numpy as np

NAN_PAIR = (float("nan"), float("nan"))


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NAN_PAIR
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ppl(nll_sums: Sequence[float], counts: Sequence[int], *, resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Interval of the token-weighted corpus PPL, resampling whole samples."""
    n = len(nll_sums)
    if resamples <= 0 or n < 2:
        return NAN_PAIR
    s, c = np.asarray(nll_sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    idx = _indices(n, resamples, seed)
    tot_c = c[idx].sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ppl = np.exp(s[idx].sum(1) / tot_c)
    return _percentiles(ppl, level)


def bootstrap_mean(values: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean over samples (entropy, per-sample scores)."""
    n = len(values)
    if resamples <= 0 or n < 2:
        return NAN_PAIR
    v = np.asarray(values, dtype=np.float64)
    return _percentiles(v[_indices(n, resamples, seed)].mean(1), level)


def bootstrap_ci(items: Sequence, stat: Callable[[Sequence], float], *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Generic (slower) percentile bootstrap of ``stat`` over ``items``, e.g. corpus BLEU over sentence pairs."""
    n = len(items)
    if resamples <= 0 or n < 2:
        return NAN_PAIR
    vals = np.array([stat([items[i] for i in row]) for row in _indices(n, resamples, seed)], dtype=np.float64)
    return _percentiles(vals, level)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        return NAN_PAIR
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_mean_std(values: Sequence[float], digits: int = 3) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(m) else "-"

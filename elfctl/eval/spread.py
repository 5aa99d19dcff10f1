"""Spread of a metric: a seeded bootstrap 95% interval over samples, and mean ± std over seeds."""

from __future__ import annotations

import math
import random
import statistics
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def bootstrap_ci(items: Sequence[T], stat: Callable[[Sequence[T]], float], *, resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over ``items`` resampled with replacement."""
    if resamples <= 0 or len(items) < 2:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(items)
    vals = sorted(stat([items[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    lo = vals[int(math.floor((1 - level) / 2 * resamples))]
    hi = vals[min(resamples - 1, int(math.ceil((1 + level) / 2 * resamples)) - 1)]
    return lo, hi


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

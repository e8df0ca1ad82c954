"""Evaluation metrics as pure functions: pass@k, cons@k (majority vote), confidence intervals."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), for n samples of which
    c are correct. Computed as a running product, stable for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def majority_vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> str | None:
    """The answer most samples agree on, answers grouped by `same` (mathematical equivalence).

    None (no answer) never wins while any answer exists; ties go to the answer seen first."""
    clusters: list[list[str]] = []
    for a in answers:
        if a is None or not str(a).strip():
            continue
        for cluster in clusters:
            if same(cluster[0], a):
                cluster.append(a)
                break
        else:
            clusters.append([a])
    if not clusters:
        return None
    best = max(clusters, key=len)  # max keeps the first of equal lengths
    return best[0]


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): normal-approximation 95% interval over problems, clipped to [0, 1]."""
    if not values:
        return 0.0, 0.0, 0.0
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values))
    return mean, max(0.0, mean - half), min(1.0, mean + half)

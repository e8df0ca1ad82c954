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


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean): over problems, each value one problem's score (the
    mean of its samples), so the error counts both the problems drawn and the samples drawn
    for them. 0 error for fewer than two values."""
    if not values:
        return 0.0, 0.0
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def per_problem_mean_se(rows: Sequence[dict], key: str) -> tuple[float, float]:
    """`mean_se` of rows[key] (true/false or a number) averaged per problem (rows[id]) first."""
    by: dict = {}
    for r in rows:
        by.setdefault(r["id"], []).append(float(r[key]))
    return mean_se([statistics.fmean(v) for v in by.values()])


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): normal-approximation 95% interval over problems, clipped to [0, 1]."""
    if not values:
        return 0.0, 0.0, 0.0
    mean, se = mean_se(values)
    if len(values) < 2:
        return mean, mean, mean
    return mean, max(0.0, mean - 1.96 * se), min(1.0, mean + 1.96 * se)

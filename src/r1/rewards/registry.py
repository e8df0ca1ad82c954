"""The reward registry and the safe, weighted combination of rewards.

A reward function takes ``(completions, examples, task)`` and returns one float (or
None, "cannot be scored") per completion. Rewards are chosen by name in the config,
never by matching dataset names. A reward that raises never stops training: the batch
is retried sample by sample, and each sample that still fails scores 0 and is logged.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence

from r1.errors import R1Error

log = logging.getLogger(__name__)

RewardFn = Callable[..., list]
REWARDS: dict[str, RewardFn] = {}
_BUILTIN_MODULES = ("r1.rewards.accuracy", "r1.rewards.format", "r1.rewards.code")


def register(name: str):
    def wrap(fn: RewardFn) -> RewardFn:
        REWARDS[name] = fn
        return fn

    return wrap


def available() -> list[str]:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    return sorted(REWARDS)


def get_reward(name: str) -> RewardFn:
    names = available()
    if name not in REWARDS:
        raise R1Error(f"unknown reward {name!r}: known rewards are {', '.join(names)}")
    return REWARDS[name]


def _safe_call(name: str, fn: RewardFn, completions, examples, task) -> tuple[list[float], int]:
    """(scores, number of failed samples); None and failures score 0.0."""
    try:
        out = list(fn(completions, examples, task))
        if len(out) != len(completions):
            raise ValueError(f"returned {len(out)} scores for {len(completions)} completions")
    except Exception as e:  # a reward bug must not kill a training run
        log.warning("reward %s failed on the batch (%s); scoring one by one", name, e)
        out = []
        for c, ex in zip(completions, examples):
            try:
                out.append(fn([c], [ex], task)[0])
            except Exception as e1:
                log.warning("reward %s failed on one sample: %s", name, e1)
                out.append(None)
    failed = sum(v is None for v in out)
    return [0.0 if v is None else float(v) for v in out], failed


def score(
    completions: Sequence[str], examples: Sequence, task, weights: dict[str, float]
) -> tuple[dict[str, list[float]], list[float], int]:
    """Run every weighted reward. Returns (per-reward scores, weighted total, failures)."""
    per: dict[str, list[float]] = {}
    failures = 0
    total = [0.0] * len(completions)
    for name, weight in weights.items():
        values, failed = _safe_call(name, get_reward(name), list(completions), list(examples), task)
        per[name] = values
        failures += failed
        total = [t + weight * v for t, v in zip(total, values)]
    return per, total, failures

"""The reward registry and the safe, weighted combination of rewards.

A reward function takes ``(completions, examples, task)`` and returns one float (or
None, "cannot be scored") per completion. It may also declare keyword parameters: the
recipe's ``reward_params: {name: {...}}`` fills them, and the trainer passes ``lengths``
(completion tokens) and ``max_tokens`` to functions that name them. Rewards are chosen by
name in the config, never by matching dataset names; ``path/to/file.py:function`` or
``package.module:function`` names a reward of your own. A reward that raises never stops
training: the batch is retried sample by sample, and each sample that still fails scores
0 and is counted. A value that is not a finite number (NaN, inf, a string) is a failure of
that sample too, scored and counted the same way: no non-finite reward ever reaches the
advantages.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from r1.errors import R1Error

log = logging.getLogger(__name__)

RewardFn = Callable[..., list]
REWARDS: dict[str, RewardFn] = {}
_BUILTIN_MODULES = ("r1.rewards.accuracy", "r1.rewards.format", "r1.rewards.code", "r1.rewards.language",
                    "r1.rewards.shaping", "r1.rewards.model")
CONTEXT = ("lengths", "max_tokens")  # what the trainer can pass besides the parameters


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
    if ":" in name:
        return load_custom(name)
    names = available()
    if name not in REWARDS:
        raise R1Error(f"unknown reward {name!r}: known rewards are {', '.join(names)} "
                      "(or path/to/file.py:function for your own)")
    return REWARDS[name]


def load_custom(spec: str) -> RewardFn:
    """`file.py:function` (a path) or `package.module:function` (importable)."""
    from r1.plugins import load_function

    return load_function(spec, "reward")


def check_rewards(rewards: dict[str, float], reward_params: dict[str, dict[str, Any]]) -> None:
    """A run's `rewards` and `reward_params` against the registry, before the run starts: every
    name a known reward or a loadable `file.py:function`, every parameter one its reward takes
    and every required one given (an R1Error naming the key)."""
    for name in rewards:
        try:
            get_reward(name)
            check_params(name, reward_params.get(name, {}))
        except (R1Error, ValueError) as e:
            raise R1Error(f"rewards.{name}: {e}") from None


def check_params(name: str, params: dict[str, Any]) -> None:
    """Every parameter names a keyword of the reward function, and every required one is
    given (ValueError otherwise)."""
    sig = inspect.signature(get_reward(name))
    for p in sig.parameters.values():
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in params:
            raise ValueError(f"reward {name!r} needs reward_params.{name}.{p.name}")
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    takes = [p for p in list(sig.parameters)[3:] if p not in CONTEXT]
    for key in params:
        if key not in takes:
            raise ValueError(f"reward {name!r} has no parameter {key!r}; it takes {', '.join(takes) or 'none'}")


def _bind(fn: RewardFn, params: dict[str, Any], context: dict[str, Any]) -> RewardFn:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    extra = {k: v for k, v in context.items() if v is not None and (var_kw or k in sig.parameters)}
    kwargs = {**extra, **params}
    return functools.partial(fn, **kwargs) if kwargs else fn


@dataclass
class Failures:
    """Per reward: samples whose scoring raised, and samples scored NaN, inf or a non-number."""

    raised: dict[str, int] = field(default_factory=dict)
    nonfinite: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.raised.values()) + sum(self.nonfinite.values())

    def __add__(self, other: "Failures") -> "Failures":
        def add(a: dict, b: dict) -> dict:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        return Failures(add(self.raised, other.raised), add(self.nonfinite, other.nonfinite))

    def metrics(self) -> dict[str, int]:
        out = {"reward_failures": self.total, "reward_nonfinite": sum(self.nonfinite.values())}
        for name in sorted({**self.raised, **self.nonfinite}):
            out[f"reward_failures/{name}"] = self.raised.get(name, 0) + self.nonfinite.get(name, 0)
        return out


def _finite_or_none(value: Any) -> tuple[float | None, bool]:
    """(score, ok): None stays "cannot be scored"; NaN, inf and non-numbers are failures."""
    if value is None:
        return None, True
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, False
    return (v, True) if math.isfinite(v) else (None, False)


PER_SAMPLE = ("lengths", "ran_on")  # context entries with one value per completion


def _safe_call(name: str, fn: RewardFn, params: dict[str, Any], context: dict[str, Any],
               completions, examples, task) -> tuple[list[float], int, int]:
    """(scores, samples whose scoring raised, samples scored with a non-finite value); a
    failure scores 0.0, a None ("cannot be scored") stays None. Per-sample context
    (`lengths`) is sliced along with the samples when retrying one by one."""
    errors = 0
    try:
        out = list(_bind(fn, params, context)(completions, examples, task))
        if len(out) != len(completions):
            raise ValueError(f"returned {len(out)} scores for {len(completions)} completions")
    except R1Error:  # the user's setup (a verifier that cannot start), not a bug: stop with it
        raise
    except Exception as e:  # a reward bug must not kill a training run
        log.warning("reward %s failed on the batch (%s); scoring one by one", name, e)
        out = []
        for i, (c, ex) in enumerate(zip(completions, examples)):
            one = {k: [v[i]] if k in PER_SAMPLE and v is not None else v for k, v in context.items()}
            try:
                out.append(_bind(fn, params, one)([c], [ex], task)[0])
            except R1Error:
                raise
            except Exception as e1:
                log.warning("reward %s failed on one sample: %s", name, e1)
                out.append(0.0)
                errors += 1
    # None from the reward itself means "cannot be scored" and stays None; a failure scores 0.0
    scores, bad = [], 0
    for v in out:
        score_, ok = _finite_or_none(v)
        if not ok:
            bad += 1
            score_ = 0.0
        scores.append(score_)
    if bad:
        log.warning("reward %s returned %d value(s) that are not finite numbers; they score 0", name, bad)
    return scores, errors, bad


def score(
    completions: Sequence[str], examples: Sequence, task, weights: dict[str, float],
    params: dict[str, dict[str, Any]] | None = None, lengths: Sequence[int] | None = None,
    max_tokens: int | None = None, ran_on: Sequence[bool] | None = None,
) -> tuple[dict[str, list[float]], list[float], Failures]:
    """Run every weighted reward. Returns (per-reward scores, weighted total, failures): a
    score is a finite float or None ("cannot be scored"), which counts as 0 in this total
    (`combine` leaves it out of its group instead)."""
    per: dict[str, list[float]] = {}
    failures = Failures()
    total = [0.0] * len(completions)
    context = {"lengths": list(lengths) if lengths is not None else None, "max_tokens": max_tokens,
               "ran_on": list(ran_on) if ran_on is not None else None}
    for name, weight in weights.items():
        values, raised, nonfinite = _safe_call(name, get_reward(name), (params or {}).get(name, {}), context,
                                               list(completions), list(examples), task)
        per[name] = values
        failures.raised[name], failures.nonfinite[name] = raised, nonfinite
        total = [t + weight * (v or 0.0) for t, v in zip(total, values)]
    bad = [i for i, t in enumerate(total) if not math.isfinite(t)]
    if bad:  # finite scores times finite weights can still overflow
        raise R1Error(f"the weighted reward of sample {bad[0]} is not finite ({total[bad[0]]}): "
                      f"scores {({k: v[bad[0]] for k, v in per.items()})}, weights {weights}")
    return per, total, failures


def combine(per: dict[str, list[float | None]], weights: dict[str, float],
            group_size: int) -> tuple[list[float], list[bool]]:
    """(weighted totals [B], scored [B]) with None left out of its group: a reward's None
    takes that reward's mean over the group's scored samples (so it moves neither the
    group's mean nor anyone's advantage), or 0 when none of the group has it; a sample that
    no weighted reward could score is unscored (`scored` False: out of its group's statistics and of
    the loss). Groups are contiguous rows of `group_size`."""
    n = len(next(iter(per.values()))) if per else 0
    total, scored = [0.0] * n, [not per] * n
    for name, values in per.items():
        w = weights.get(name, 0.0)
        for start in range(0, n, group_size):
            group = values[start : start + group_size]
            known = [v for v in group if v is not None]
            fill = sum(known) / len(known) if known else 0.0
            for j, v in enumerate(group):
                total[start + j] += w * (fill if v is None else v)
                scored[start + j] = scored[start + j] or (v is not None and w != 0)
    return total, scored

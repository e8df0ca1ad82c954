"""Shaping rewards: length, repetition and step structure.

Lengths are completion tokens when the trainer passes them (``lengths``), else words.
Parameters come from the recipe's ``reward_params`` (e.g. ``overlong: {cache_len: 128}``);
``max_len`` defaults to the rollout's ``max_new_tokens``.
"""

from __future__ import annotations

import math
import re

from r1.rewards.registry import register


def _lengths(completions, lengths) -> list[int]:
    return list(lengths) if lengths is not None else [len(c.split()) for c in completions]


def cosine_scaled(length: int, correct: bool, max_len: int, *, correct_short: float = 1.0,
                  correct_long: float = 0.5, wrong_short: float = -1.0, wrong_long: float = -0.5) -> float:
    """Cosine length scaling (Yeo et al. 2025, "Demystifying Long Chain-of-Thought
    Reasoning"): a right answer earns more the shorter it is (correct_short at length 0
    down to correct_long at max_len); a wrong one is punished less the longer it thought
    (wrong_short at 0 up to wrong_long at max_len). Lengths past max_len count as max_len."""
    t = min(max(length, 0), max_len) / max_len
    start, end = (correct_short, correct_long) if correct else (wrong_short, wrong_long)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    """DAPO's soft overlong punishment: 0 up to max_len - cache_len, then a linear ramp to
    -1 at max_len, and -1 beyond."""
    free = max_len - cache_len
    if length <= free:
        return 0.0
    if length <= max_len:
        return (free - length) / cache_len
    return -1.0


def ngram_repetition(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams in `text`: 1 - unique/total (0 when too short)."""
    toks = re.findall(r"\w+", text.lower())
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


_STEP = re.compile(r"(?im)^\s*(?:step\s*\d+\s*[:.)]|\d+[.)]\s|[-*•]\s)|\b(?:first|second|third|next|then|finally)\s*,")


def reasoning_steps(text: str) -> int:
    """How many step markers the text has: "Step 2:", "3. ", "- ", "First,", "Finally,"."""
    return len(_STEP.findall(text))


@register("cosine")
def cosine_reward(completions, examples, task, lengths=None, max_tokens=None, max_len=None,
                  correct_short=1.0, correct_long=0.5, wrong_short=-1.0, wrong_long=-0.5):
    """Cosine-scaled correctness (use instead of `accuracy`, not on top of it)."""
    max_len = int(max_len or max_tokens or 1024)
    ok = task.score_batch(list(completions), list(examples))
    return [cosine_scaled(n, o, max_len, correct_short=correct_short, correct_long=correct_long,
                          wrong_short=wrong_short, wrong_long=wrong_long)
            for n, o in zip(_lengths(completions, lengths), ok)]


@register("overlong")
def overlong_reward(completions, examples=None, task=None, lengths=None, max_tokens=None,
                    max_len=None, cache_len=None):
    """DAPO soft overlong punishment in [-1, 0]; cache_len defaults to a quarter of max_len."""
    max_len = int(max_len or max_tokens or 1024)
    cache_len = int(cache_len or max(1, max_len // 4))
    if not 0 < cache_len <= max_len:
        raise ValueError(f"overlong: cache_len must be in (0, max_len], got {cache_len} for max_len {max_len}")
    return [overlong_penalty(n, max_len, cache_len) for n in _lengths(completions, lengths)]


@register("repetition")
def repetition_reward(completions, examples=None, task=None, ngram=3, max_penalty=-1.0):
    """max_penalty × the share of repeated word n-grams (0 for no repetition)."""
    return [max_penalty * ngram_repetition(c, ngram) for c in completions]


@register("reasoning_steps")
def reasoning_steps_reward(completions, examples=None, task=None, target=3):
    """min(1, step markers / target): rewards laying the reasoning out in steps."""
    return [min(1.0, reasoning_steps(c) / target) for c in completions]

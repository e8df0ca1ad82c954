"""Format rewards: the strict R1 template and partial credit per tag."""

from __future__ import annotations

from r1.data.prompts import is_strict_format
from r1.rewards.registry import register

TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@register("format")
def format_reward(completions, examples=None, task=None, ran_on=None):
    """1.0 for exactly ``<think>…</think> <answer>…</answer>``, else 0.0; also 0.0 for a
    sample that went on after its stop string instead of ending (`ran_on`, from the trainer
    with `rollout.stop_grace_tokens`): R1's template ends with the end of the sequence."""
    ran_on = ran_on or [False] * len(completions)
    return [1.0 if is_strict_format(c) and not r else 0.0 for c, r in zip(completions, ran_on)]


@register("tag_count")
def tag_count_reward(completions, examples=None, task=None):
    """0.25 for each of the four tags that appears exactly once (partial credit that
    gives a model which never writes the full template something to climb)."""
    return [sum(0.25 for t in TAGS if c.count(t) == 1) for c in completions]

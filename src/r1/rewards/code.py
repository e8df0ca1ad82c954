"""Code rewards: the last fenced code block of a completion, run against the problem's
tests in the sandbox (`r1.data.code`): ``code`` (1 when every test passes, else 0) and
``code_fraction`` (the share of stdin/stdout cases passed; the same as ``code`` for
HumanEval, whose asserts run as one).
"""

from __future__ import annotations

from typing import Any

from r1.data.code import extract_code, pass_fractions, run_tests
from r1.rewards.registry import register
from r1.sandbox import ExecResult, execute

__all__ = ["ExecResult", "execute", "extract_code", "run_tests", "pass_fractions"]


def _metas(examples) -> list[dict[str, Any]]:
    return [getattr(ex, "meta", None) or {} for ex in examples]


@register("code")
def code_reward(completions, examples, task=None):
    """1.0 when the last code block passes every test, else 0.0."""
    fr = pass_fractions([extract_code(c) for c in completions], _metas(examples))
    return [1.0 if f == 1.0 else 0.0 for f in fr]


@register("code_fraction")
def code_fraction_reward(completions, examples, task=None):
    """The share of the problem's tests that the last code block passes."""
    return pass_fractions([extract_code(c) for c in completions], _metas(examples))

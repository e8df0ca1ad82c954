"""The accuracy reward: 1.0 when the task's verifier accepts the answer.

`answers_match` lives in `r1.data.verify` (the one verification path) and is re-exported
here, where it has always been imported from.
"""

from __future__ import annotations

from r1.data.verify import answers_match
from r1.rewards.registry import register

__all__ = ["accuracy_reward", "answers_match"]


@register("accuracy")
def accuracy_reward(completions, examples, task):
    """1.0 when the task's verifier accepts the extracted answer, else 0.0."""
    return [1.0 if ok else 0.0 for ok in task.score_batch(list(completions), list(examples))]

"""The Task interface: examples, the answer hint for the prompt, and the verifier.

Evaluation and RL call the same `score`, so a reward can never disagree with the
held-out accuracy about what a right answer is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from r1.data.verify import extract
from r1.errors import R1Error


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Example:
    id: str
    question: str  # the problem text shown to the model
    answer: str  # the gold final answer
    meta: dict[str, Any] = field(default_factory=dict)  # task-specific fields


class Task:
    name: ClassVar[str]
    Params: ClassVar[type[TaskParams]] = TaskParams
    answer_hint: ClassVar[str] = "the final answer"  # goes into the prompt instruction
    fallback: ClassVar[str] = "none"  # answer extraction without <answer> tags
    lenient: ClassVar[bool] = True  # "last number anywhere" is a meaningful second reading

    def __init__(self, params: TaskParams, seed: int = 0):
        self.params = params
        self.seed = seed

    # -- data ------------------------------------------------------------------------
    def splits(self, train_size: int, heldout_size: int) -> tuple[list[Example], list[Example]]:
        """Disjoint (train, held-out) lists, the same for the same seed."""
        raise NotImplementedError

    # -- verification ----------------------------------------------------------------
    def verify(self, prediction: str | None, example: Example) -> bool:
        raise NotImplementedError

    def extract(self, completion: str) -> str | None:
        return extract(completion, fallback=self.fallback)

    def equivalent(self, a: str, b: str) -> bool:
        """Whether two answers to the same problem are the same answer (cons@k votes with it):
        mathematical equivalence, as `verify` judges an answer against the gold one."""
        from r1.data.verify import answers_match

        return answers_match(a, b)

    def score(self, completion: str, example: Example) -> bool:
        return self.verify(self.extract(completion), example)

    def verify_batch(self, predictions: list[str | None], examples: list[Example]) -> list[bool]:
        """`verify` over a batch; tasks whose verifier runs programs do it in parallel."""
        return [self.verify(p, ex) for p, ex in zip(predictions, examples)]

    def score_batch(self, completions: list[str], examples: list[Example]) -> list[bool]:
        return self.verify_batch([self.extract(c) for c in completions], examples)


def split_pool(pool: list[Example], train_size: int, heldout_size: int, seed: int):
    """Shuffle a finite pool by seed; held-out first, train from the rest (disjoint)."""
    if train_size == 0:  # "all the rest": the held-out share is capped at the pool, so an evaluation
        heldout_size = min(heldout_size, len(pool))  # may hold out all of it (a trainer refuses an empty split)
    elif heldout_size >= len(pool):
        raise R1Error(
            f"held-out size {heldout_size} leaves no training data out of {len(pool)} examples"
        )
    order = list(pool)
    random.Random(seed).shuffle(order)
    heldout = order[:heldout_size]
    train = order[heldout_size:]
    if train_size > 0:
        train = train[:train_size]
    return train, heldout


def curriculum_levels(examples: list[Example], key: str, cumulative: bool) -> list[list[int]]:
    """Indices of `examples` per curriculum level, easiest first: the examples whose
    ``meta[key]`` is that level's value (and, `cumulative`, every easier one's too)."""
    missing = next((ex for ex in examples if not isinstance(ex.meta.get(key), (int, float))), None)
    if missing is not None:
        raise R1Error(f"task.curriculum.key: training example {missing.id} has no numeric meta field {key!r} "
                      f"(it has {sorted(missing.meta) or 'none'})")
    values = sorted({ex.meta[key] for ex in examples})
    return [[i for i, ex in enumerate(examples) if (ex.meta[key] <= v if cumulative else ex.meta[key] == v)]
            for v in values]

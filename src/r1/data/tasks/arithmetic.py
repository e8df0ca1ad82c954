"""Arithmetic: integer expressions of configurable size, operations and length."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from r1.data.tasks.base import Example, Task, TaskParams, split_pool
from r1.data.tasks.countdown import safe_eval
from r1.data.verify import answers_match
from r1.errors import R1Error


class ArithmeticParams(TaskParams):
    digits: int = Field(2, ge=1, le=9, description="operands have at most this many digits")
    max_value: int | None = Field(None, ge=1, description="cap on operands (overrides digits)")
    min_value: int = Field(0, ge=0, description="smallest operand")
    terms: int = Field(2, ge=2, le=6, description="number of operands (the most, with min_terms)")
    min_terms: int | None = Field(None, ge=2, le=6, description="draw the number of operands from "
                                  "min_terms..terms (problems of mixed length); default: always terms")
    operations: list[Literal["+", "-", "*"]] = Field(default_factory=lambda: ["+"],
                                                      description="the operators drawn between operands")


class ArithmeticTask(Task):
    name = "arithmetic"
    Params = ArithmeticParams
    answer_hint = "the final number"

    def _draw(self, rng: random.Random) -> str:
        p = self.params
        hi = p.max_value if p.max_value is not None else 10**p.digits - 1
        if hi < p.min_value:
            raise R1Error(f"task.params: max_value {hi} is below min_value {p.min_value}")
        low = p.terms if p.min_terms is None else p.min_terms
        if low > p.terms:
            raise R1Error(f"task.params: min_terms {low} is above terms {p.terms}")
        count = p.terms if low == p.terms else rng.randint(low, p.terms)
        nums = [rng.randint(p.min_value, hi) for _ in range(count)]
        expr = str(nums[0])
        for n in nums[1:]:
            expr += f" {rng.choice(p.operations)} {n}"
        return expr

    def splits(self, train_size, heldout_size):
        rng = random.Random(f"arithmetic-{self.seed}")
        want = train_size + heldout_size
        seen: dict[str, None] = {}
        for _ in range(max(want * 50, 1000)):
            seen.setdefault(self._draw(rng), None)
            if len(seen) >= want:
                break
        pool = [
            Example(id=f"arith-{i}", question=f"What is {e}?", answer=str(int(safe_eval(e))),
                    meta={"difficulty": e.count(" ") // 2 + 1})  # the number of operands
            for i, e in enumerate(seen)
        ]
        return split_pool(pool, train_size, heldout_size, self.seed)

    def verify(self, prediction, example):
        return answers_match(example.answer, prediction)

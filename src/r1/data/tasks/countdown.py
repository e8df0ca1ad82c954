"""Countdown: reach a target with the given numbers, each used exactly once, and + - * /.

The answer is an equation checked by a small AST evaluator (numbers, the four
operations, unary minus, parentheses): never `eval`.
"""

from __future__ import annotations

import ast
import operator
import random
from fractions import Fraction

from pydantic import Field

from r1.data.tasks.base import Example, Task, TaskParams, split_pool

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_EXPR_CHARS = 200


class UnsafeExpression(ValueError):
    pass


def _walk(node, numbers: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _walk(node.body, numbers)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        numbers.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _walk(node.left, numbers), _walk(node.right, numbers)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpression("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _walk(node.operand, numbers)
        return -value if isinstance(node.op, ast.USub) else value
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def safe_eval(expr: str, numbers: list[int] | None = None) -> Fraction:
    """Evaluate an arithmetic expression exactly; collects the literals into `numbers`."""
    if len(expr) > MAX_EXPR_CHARS:
        raise UnsafeExpression("expression too long")
    expr = expr.replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise UnsafeExpression(f"not an expression: {e.msg}") from None
    return _walk(tree, numbers if numbers is not None else [])


def equation_value(answer: str | None) -> tuple[Fraction, tuple[int, ...]] | None:
    """(value, the numbers used, sorted) of an equation's left side; None if it is no equation."""
    if not answer:
        return None
    expr = answer.split("=")[0] if answer.count("=") == 1 else answer
    used: list[int] = []
    try:
        value = safe_eval(expr, used)
    except (UnsafeExpression, ZeroDivisionError, OverflowError, RecursionError, ValueError):
        return None
    return value, tuple(sorted(used))


def check_equation(answer: str | None, nums: list[int], target: int) -> bool:
    """True when `answer` uses exactly `nums` and evaluates to `target`."""
    got = equation_value(answer)
    return got is not None and got == (target, tuple(sorted(nums)))


class CountdownParams(TaskParams):
    num_numbers: int = Field(3, ge=2, le=6, description="numbers given, each to be used exactly once")
    max_number: int = Field(20, ge=2, le=1000, description="the numbers are drawn from 1 to this")
    max_target: int = Field(100, ge=1, description="targets are whole numbers from 1 to this")


class CountdownTask(Task):
    name = "countdown"
    Params = CountdownParams
    answer_hint = "the equation"

    def _draw(self, rng: random.Random) -> tuple[list[int], int, str] | None:
        p = self.params
        nums = [rng.randint(1, p.max_number) for _ in range(p.num_numbers)]
        order = nums[:]
        rng.shuffle(order)
        expr = str(order[0])
        for n in order[1:]:
            op = rng.choice("+-*/")
            expr = f"({expr} {op} {n})"
        try:
            value = safe_eval(expr)
        except UnsafeExpression:
            return None
        if value.denominator != 1 or not (1 <= value <= p.max_target):
            return None
        return nums, int(value), expr[1:-1] if expr.startswith("(") else expr

    def splits(self, train_size, heldout_size):
        rng = random.Random(f"countdown-{self.seed}")
        want = train_size + heldout_size
        seen: dict[tuple, Example] = {}
        for _ in range(want * 200):
            drawn = self._draw(rng)
            if drawn is None:
                continue
            nums, target, expr = drawn
            key = (tuple(sorted(nums)), target)
            if key not in seen:
                seen[key] = Example(
                    id=f"countdown-{len(seen)}",
                    question=(
                        f"Using the numbers {nums}, create an equation that equals {target}. "
                        "You can use +, -, * and /, and each number must be used exactly once."
                    ),
                    answer=expr,
                    meta={"numbers": nums, "target": target},
                )
            if len(seen) >= want:
                break
        return split_pool(list(seen.values()), train_size, heldout_size, self.seed)

    def verify(self, prediction, example):
        return check_equation(prediction, example.meta["numbers"], example.meta["target"])

    def equivalent(self, a, b):
        """Two equations are one answer when they use the same numbers for the same value."""
        va = equation_value(a)
        return va is not None and va == equation_value(b)

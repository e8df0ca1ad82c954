"""cons@k votes with the task's own equivalence and judges the vote with the task's own
verifier: Countdown's gold is one equation among many, HumanEval's is one program among many."""

from __future__ import annotations

from r1.data.tasks import get_task
from r1.data.tasks.base import Example
from r1.eval.metrics import majority_vote
from r1.eval.runner import compute_metrics
from r1.rewards.accuracy import answers_match


def _rows(ex: Example, answers: list[str | None], task) -> list[dict]:
    ok = task.verify_batch(answers, [ex] * len(answers))
    return [{"id": ex.id, "sample": i, "answer": a, "correct": bool(c), "format": True, "tokens": 5}
            for i, (a, c) in enumerate(zip(answers, ok))]


def test_countdown_votes_equations_by_value_and_numbers():
    task = get_task("countdown", {})
    ex = Example("c0", "Using [3, 4, 5] make 23", "(4 * 5) + 3", meta={"numbers": [3, 4, 5], "target": 23})
    # three samples answer the bare target (not an equation: wrong), one writes a right equation
    answers = ["23", "23", "23", "5 * 4 + 3"]
    m = compute_metrics(_rows(ex, answers, task), [ex], 4, task)
    assert m["pass@1"] == 0.25 and m["cons@4"] == 0.0
    # the old vote (mathematical equivalence, judged against the gold equation) called it right
    old = majority_vote(answers, answers_match)
    assert old == "23" and answers_match(ex.answer, old)
    # equations that are one answer vote together: 2 right (different spellings) beat 1 wrong
    answers = ["3 + 4 * 5", "5*4+3 = 23", "(3 + 4) * 5", None]
    m = compute_metrics(_rows(ex, answers, task), [ex], 4, task)
    assert m["cons@4"] == 1.0 and m["pass@1"] == 0.5
    assert task.equivalent("3 + 4 * 5", "4*5+3") and not task.equivalent("3 + 4 * 5", "(3 + 4) * 5")
    assert not task.equivalent("23", "3 + 4 * 5") and not task.equivalent(None, None)


def test_humaneval_votes_programs_by_code_not_by_the_canonical_text():
    task = get_task("humaneval", {"path": "unused.jsonl"})
    meta = {"prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"}
    ex = Example("h0", "add", "    return a + b\n", meta=meta)
    right = "def add(a, b):\n    return b + a\n"
    right_reformatted = "def add(a,b):\n    # commutative\n    return (b + a)\n"
    wrong = "def add(a, b):\n    return a - b\n"
    answers = [right, right_reformatted, wrong, None]
    m = compute_metrics(_rows(ex, answers, task), [ex], 4, task)
    assert m["pass@1"] == 0.5 and m["cons@4"] == 1.0
    # the old vote compared code as math answers against the canonical body: never right
    old = majority_vote(answers, answers_match)
    assert not answers_match(ex.answer, old)
    assert task.equivalent(right, right_reformatted) and not task.equivalent(right, wrong)

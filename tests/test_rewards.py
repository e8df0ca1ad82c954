import logging
import math

import pytest

from r1.data.tasks import get_task
from r1.data.tasks.base import Example
from r1.errors import R1Error
from r1.rewards import registry
from r1.rewards.accuracy import answers_match
from r1.rewards.format import format_reward, tag_count_reward


def test_format_reward():
    assert format_reward(["<think>a</think><answer>1</answer>", "<think>a</think>1"]) == [1.0, 0.0]


def test_tag_count_partial_credit():
    out = tag_count_reward([
        "<think>a</think><answer>1</answer>",
        "<think>a</think>",
        "<think><think>a</think>",
        "nothing",
    ])
    assert out == [1.0, 0.5, 0.25, 0.0]


@pytest.mark.parametrize("gold,pred,ok", [
    ("16", "16", True), ("16", "16.0", True), ("2125", "2,125", True), ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{2}", "1/2", True), ("x^2+1", "1+x^2", True), ("3\\sqrt{3}", "3 \\sqrt 3", True),
    ("16", "17", False), ("16", None, False), ("16", "", False), ("\\frac{9}{4}", "2.25", True),
])
def test_answers_match(gold, pred, ok):
    assert answers_match(gold, pred) is ok


def test_accuracy_reward_uses_the_task_verifier():
    task = get_task("arithmetic", {"digits": 1})
    ex = Example(id="a", question="What is 2 + 3?", answer="5")
    acc = registry.get_reward("accuracy")
    out = acc(["<think>..</think><answer>5</answer>", "<think>..</think><answer>6</answer>", "5"], [ex] * 3, task)
    assert out == [1.0, 0.0, 0.0]  # strict: no <answer> tag, no answer


def test_unknown_reward_is_a_clear_error():
    with pytest.raises(R1Error, match="unknown reward 'nope'"):
        registry.get_reward("nope")


def test_failing_reward_scores_zero_and_never_raises(caplog):
    calls = []

    @registry.register("test_flaky")
    def flaky(completions, examples, task):
        calls.append(len(completions))
        if any("boom" in c for c in completions):
            raise RuntimeError("boom")
        return [1.0] * len(completions)

    try:
        with caplog.at_level(logging.WARNING):
            per, total, failures = registry.score(["ok", "boom", "ok"], [None] * 3, None, {"test_flaky": 2.0})
        assert per["test_flaky"] == [1.0, 0.0, 1.0]
        assert total == [2.0, 0.0, 2.0]
        assert failures.total == 1 and failures.raised == {"test_flaky": 1}
        assert "test_flaky failed" in caplog.text
    finally:
        registry.REWARDS.pop("test_flaky")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "0.5x", [1]])
def test_non_finite_reward_values_are_failures_scored_zero(bad, caplog):
    @registry.register("test_nan")
    def nan_reward(completions, examples, task):
        return [1.0, bad, None]

    try:
        with caplog.at_level(logging.WARNING):
            per, total, failures = registry.score(["a", "b", "c"], [None] * 3, None, {"test_nan": 1.0, "format": 1.0})
        assert per["test_nan"] == [1.0, 0.0, None] and all(map(math.isfinite, total))  # None: unscored
        assert failures.nonfinite == {"test_nan": 1, "format": 0} and failures.total == 1
        assert failures.metrics() == {"reward_failures": 1, "reward_nonfinite": 1, "reward_failures/format": 0,
                                      "reward_failures/test_nan": 1}
        assert "test_nan returned 1 value(s) that are not finite" in caplog.text
    finally:
        registry.REWARDS.pop("test_nan")


def test_weighted_sum_that_overflows_is_a_clear_error():
    @registry.register("test_huge")
    def huge(completions, examples, task):
        return [1e308] * len(completions)

    try:
        with pytest.raises(R1Error, match="weighted reward of sample 0 is not finite"):
            registry.score(["a"], [None], None, {"test_huge": 10.0})
    finally:
        registry.REWARDS.pop("test_huge")


def test_weighted_sum_of_rewards():
    task = get_task("arithmetic", {"digits": 1})
    ex = Example(id="a", question="q", answer="5")
    per, total, _ = registry.score(["<think>x</think><answer>5</answer>", "<think>x</think>"], [ex, ex], task,
                                   {"accuracy": 1.0, "format": 0.5, "tag_count": 0.5})
    assert per == {"accuracy": [1.0, 0.0], "format": [1.0, 0.0], "tag_count": [1.0, 0.5]}
    assert total == [2.0, 0.25]


def test_combine_leaves_none_out_of_its_group():
    """A reward's None takes that reward's mean over its group's scored samples; a sample
    no reward scores is unscored; groups are independent."""
    per = {"acc": [1.0, None, 0.0, 1.0, None, None], "fmt": [0.5, 0.5, None, 1.0, None, None]}
    total, scored = registry.combine(per, {"acc": 1.0, "fmt": 2.0}, group_size=3)
    # group 1: acc's None -> mean(1, 0) = 0.5; fmt's None -> mean(0.5, 0.5) = 0.5
    assert total[:3] == [1.0 + 1.0, 0.5 + 1.0, 0.0 + 1.0]
    # group 2: one scored sample; the others take its values but are unscored
    assert total[3:] == [3.0, 3.0, 3.0] and scored == [True, True, True, True, False, False]
    per = {"acc": [None, None]}
    assert registry.combine(per, {"acc": 1.0}, 2) == ([0.0, 0.0], [False, False])


def test_none_is_kept_by_score_and_counts_zero_in_its_total():
    @registry.register("test_none")
    def maybe(completions, examples, task):
        return [None, 1.0]

    try:
        per, total, failures = registry.score(["a", "b"], [None] * 2, None, {"test_none": 2.0})
        assert per["test_none"] == [None, 1.0] and total == [0.0, 2.0] and failures.total == 0
    finally:
        registry.REWARDS.pop("test_none")


def test_per_sample_context_is_sliced_when_a_reward_is_retried_one_by_one():
    from r1.rewards import registry

    @registry.register("test_batch_shy")
    def batch_shy(completions, examples, task, ran_on, lengths):
        if len(completions) > 1:
            raise RuntimeError("only one at a time")
        return [float(ran_on[0]) + lengths[0]]

    try:
        per, _, failures = registry.score(["a", "b", "c"], [None] * 3, None, {"test_batch_shy": 1.0},
                                          lengths=[10, 20, 30], ran_on=[True, False, True])
        assert per["test_batch_shy"] == [11.0, 20.0, 31.0] and failures.total == 0
    finally:
        registry.REWARDS.pop("test_batch_shy")


def test_a_runs_rewards_are_checked_against_the_registry_before_its_folder_is_touched(tmp_path):
    """Settings only hold names; `check_rewards` checks them where a run starts: an unknown
    reward, a parameter its reward does not take, a required one missing, each one line naming
    the key, and `GRPOTrainer` raises it before it creates the run folder."""
    from r1.config import build_config
    from r1.trainers.grpo import GRPOTrainer

    registry.check_rewards({"accuracy": 1.0, "language": 0.1}, {"language": {"target": "zh"}})
    for rewards, params, message in [
        ({"nope": 1.0}, {}, "rewards.nope: unknown reward 'nope'"),
        ({"format": 1.0}, {"format": {"bonus": 3}}, "rewards.format: reward 'format' has no parameter 'bonus'"),
    ]:
        with pytest.raises(R1Error) as e:
            registry.check_rewards(rewards, params)
        assert message in str(e.value) and "\n" not in str(e.value)
    cfg = build_config({}, ["rewards.nope=1"])  # settings alone accept any name
    with pytest.raises(R1Error, match="unknown reward 'nope'"):
        GRPOTrainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()

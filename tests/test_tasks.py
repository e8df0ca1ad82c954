import pytest

from r1.data.tasks import get_task
from r1.data.tasks.countdown import UnsafeExpression, check_equation, safe_eval
from r1.data.tasks.files import gsm8k_gold
from r1.errors import R1Error
from r1.runs import read_jsonl


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')", "open('x')", "2 ** 100", "[1, 2]", "a + 1", "1 if 1 else 2",
    "(lambda: 1)()", "9" * 300,
])
def test_safe_eval_refuses_everything_but_arithmetic(expr):
    with pytest.raises(UnsafeExpression):
        safe_eval(expr)


def test_safe_eval_is_exact():
    assert safe_eval("(7 - 1) / 3 * 6") == 12
    assert safe_eval("-(2 + 3)") == -5


@pytest.mark.parametrize("answer,ok", [
    ("(20 + 16) - 19", True), ("20 + 16 - 19 = 17", True), ("16 + 20 - 19", True),
    ("20 + 16 - 19 + 0", False),  # extra number
    ("20 + 16", False),  # a number unused
    ("20 - 16 + 19", False),  # wrong value
    ("20 / 0 + 16 + 19", False), ("", False), (None, False), ("20 + 16 - 19.0", False),
])
def test_countdown_verifier(answer, ok):
    assert check_equation(answer, [20, 16, 19], 17) is ok


def test_countdown_gold_answers_verify():
    task = get_task("countdown", {"num_numbers": 4}, seed=3)
    train, held = task.splits(50, 10)
    for ex in train + held:
        assert task.verify(ex.answer, ex), ex
        assert task.score(f"<think>..</think><answer>{ex.answer}</answer>", ex)


@pytest.mark.parametrize("name,params", [
    ("arithmetic", {"digits": 2, "operations": ["+", "-", "*"], "terms": 3}),
    ("countdown", {}),
])
def test_generated_splits_are_disjoint_and_seeded(name, params):
    task = get_task(name, params, seed=1)
    train, held = task.splits(200, 50)
    assert len(train) == 200 and len(held) == 50
    assert not {e.question for e in train} & {e.question for e in held}
    again = get_task(name, params, seed=1).splits(200, 50)
    assert [e.question for e in again[1]] == [e.question for e in held]
    other = get_task(name, params, seed=2).splits(200, 50)
    assert [e.question for e in other[1]] != [e.question for e in held]


def test_arithmetic_answers_are_right():
    task = get_task("arithmetic", {"digits": 2, "operations": ["+", "-", "*"], "terms": 3})
    train, _ = task.splits(50, 5)
    for ex in train:
        expr = ex.question.removeprefix("What is ").removesuffix("?")
        assert int(ex.answer) == int(safe_eval(expr))


def test_arithmetic_mixes_problem_lengths_with_min_terms():
    task = get_task("arithmetic", {"max_value": 9, "min_terms": 2, "terms": 4, "operations": ["+", "-"]})
    train, held = task.splits(300, 50)
    counts = {ex.question.count(" + ") + ex.question.count(" - ") + 1 for ex in train + held}
    assert counts == {2, 3, 4}
    for ex in train:
        assert int(ex.answer) == int(safe_eval(ex.question.removeprefix("What is ").removesuffix("?")))
    fixed = get_task("arithmetic", {"max_value": 9, "terms": 3})
    assert {ex.question.count(" + ") for ex in fixed.splits(40, 5)[0]} == {2}
    with pytest.raises(R1Error, match="min_terms 5 is above terms 3"):
        get_task("arithmetic", {"min_terms": 5, "terms": 3}).splits(10, 2)


def test_gsm8k_gold_and_file_tasks(tmp_path):
    assert gsm8k_gold("He has 3 + 4 = <<3+4=7>>7.\n#### 1,250") == "1250"
    path = tmp_path / "g.jsonl"
    path.write_text("\n".join(
        f'{{"question": "q{i}", "answer": "steps\\n#### {i}"}}' for i in range(20)) + "\n")
    task = get_task("gsm8k", {"path": str(path)})
    train, held = task.splits(0, 5)
    assert len(train) == 15 and len(held) == 5
    assert not {e.question for e in train} & {e.question for e in held}
    ex = held[0]
    assert task.score(f"<think></think><answer>{ex.answer}</answer>", ex)


def test_math_task_gold_from_last_boxed(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"problem": "p", "solution": "so \\\\boxed{1} or \\\\boxed{\\\\frac{1}{2}}"}\n' * 3)
    task = get_task("math", {"path": str(path)})
    train, held = task.splits(0, 1)
    assert held[0].answer == "\\frac{1}{2}"
    assert task.score("<think>.</think><answer>\\boxed{0.5}</answer>", held[0])
    assert task.score("<think>.</think> \\boxed{1/2}", held[0])  # the math task accepts a bare \boxed{}


def test_shared_benchmark_files_load():
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not data.exists():
        pytest.skip("../shared/data is not beside the project")
    train, held = get_task("gsm8k", {"path": str(data / "gsm8k_train.jsonl")}).splits(0, 100)
    assert len(held) == 100 and len(train) == 7473 - 100
    _, held = get_task("math", {"path": str(data / "math500.jsonl")}).splits(0, 100)
    assert all(e.answer for e in held)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(R1Error, match=r"bad.jsonl:2: malformed JSON"):
        read_jsonl(path)
    path.write_text('{"problem": "a"}\n')
    with pytest.raises(R1Error, match=r"bad.jsonl:1: missing field 'answer'"):
        get_task("gsm8k", {"path": str(path)}).splits(0, 1)
    with pytest.raises(R1Error, match="does not exist"):
        get_task("gsm8k", {"path": str(tmp_path / "nope.jsonl")}).splits(0, 1)


def test_unknown_task_and_params():
    with pytest.raises(R1Error, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(R1Error, match="unknown key 'task.params.digit'"):
        get_task("arithmetic", {"digit": 2})
    with pytest.raises(R1Error, match="task.params.digits"):
        get_task("arithmetic", {"digits": "many"})


def test_logs_drop_only_a_torn_last_line(tmp_path):
    """r1's own logs (metrics, samples): a killed run's torn last line is dropped; a bad line
    before it is an error naming file and line, not a silent truncation of what follows."""
    from r1.runs import read_log

    path = tmp_path / "metrics.jsonl"
    assert read_log(path) == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "rew')
    assert read_log(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"step": 2, "rew\n{"step": 3}\n')
    with pytest.raises(R1Error, match=r"metrics.jsonl:2: malformed JSON"):
        read_log(path)

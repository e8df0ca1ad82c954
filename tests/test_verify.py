"""r1's verification path against Math-Verify, the field's reference verifier.

The reference: Math-Verify's `verify(parse("$gold$"), parse(text))` with its defaults. r1
must agree with it on every case, except where one of the documented differences (README,
"How answers are verified") applies, and then r1's verdict must be the reference's verdict
under that difference's reading. On labelled cases r1 must also be right.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from math_verify import parse, verify

from r1.data import verify as V
from r1.rewards.accuracy import answers_match
from verify_cases import cases

CASES = cases()
DELIMS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")


def mv(gold: str, text: str) -> bool:
    return bool(verify(parse(f"${gold}$"), parse(text)))


def documented_readings(gold: str, text: str) -> dict[str, bool]:
    """Math-Verify's verdict under each documented difference that applies to the case."""
    out = {}
    joined = V.join_digit_groups(text)
    if joined != text:  # 0. digit groups written with spaces are joined
        out["digit groups"] = mv(gold, joined)
        text = joined
    span = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    if span:  # 1. only the last <answer>'s content is judged
        text = span[-1].strip()
        out["tags"] = mv(gold, text) or mv(gold, f"${text}$")
    if text.strip() == gold.strip():  # 2. the same string is the same answer
        out["same string"] = True
    if not any(d in text for d in DELIMS):  # 3. a bare answer is read as math
        out["bare answer as math"] = mv(gold, f"${text.strip()}$")
    if re.fullmatch(r"[-+]?\d[\d ,.]*", gold.strip()):  # 4. a gold number read by the number rules
        out["gold number"] = bool(verify(parse(gold), parse(text)))
    return out


def test_r1_agrees_with_math_verify_except_where_documented():
    unexplained, differences = [], {}
    for gold, text, _, kind in CASES:
        ours, ref = answers_match(gold, text), mv(gold, text)
        if ours == ref:
            continue
        readings = documented_readings(gold, text)
        why = [name for name, verdict in readings.items() if verdict == ours]
        if not why:
            unexplained.append((kind, gold, text[-90:], ours, ref, readings))
        else:
            differences[why[0]] = differences.get(why[0], 0) + 1
    assert not unexplained, "\n".join(map(repr, unexplained))
    assert len(CASES) > 300


def test_r1_is_right_on_every_labelled_case():
    labelled = [(g, t, label, kind) for g, t, label, kind in CASES if label is not None]
    wrong = [(kind, g, t[-80:], label) for g, t, label, kind in labelled if answers_match(g, t) is not label]
    assert not wrong, "\n".join(map(repr, wrong))
    # Math-Verify used plainly (no tags, no math reading of bare answers) gets some of them wrong
    assert sum(mv(g, t) is not label for g, t, label, _ in labelled) > 0


@pytest.mark.parametrize("gold,text", [
    ("42", "x" * 3000 + " so \\boxed{42}"),  # long completions are judged, not rejected
    ("14916", "Final Answer: The final answer is $14{,}916$. I hope it is correct."),
    ("1000", "1 000"), ("1000.99", "1000,99"),
])
def test_the_kinds_of_failure_the_issue_names_now_pass(gold, text):
    assert answers_match(gold, text)


def test_extract_gives_an_answer_that_reads_back_the_same():
    texts = {"<answer>7</answer>": "7", "so \\boxed{5}.": "5", "\\boxed{1}, \\boxed{2}": "\\boxed{1}, \\boxed{2}",
             "Final Answer: The final answer is $14{,}916$. I hope it is correct.": "14,916",
             "The roots are $1,2$ indeed": "$1,2$", "nothing to see": None}
    for text, want in texts.items():
        assert V.extract(text) == want
        if want is not None:
            assert answers_match(want, text) and answers_match(V.extract(text), text)
    assert answers_match("\\{1,2\\}", V.extract("The roots are $1,2$ indeed"))
    assert V.extract("so \\boxed{5} and 6", fallback="last_number") == "5"  # other fallbacks: answers.extract_answer
    assert V.extract("so 5 and 6", fallback="last_number") == "6" and V.extract("so 5", fallback="none") is None


PATHOLOGICAL = [
    "2^{2^{2^{2^{2^{2^{2^{2^{9}}}}}}}}",  # a tower of exponents
    "9^{9^{9^{9^{9}}}} - 9^{9^{9^{9^{9}}}}",
    "+".join(["x^{99}"] * 1400),  # 10,000 characters
    "\\frac{1}{" * 300 + "2" + "}" * 300,
    "(" * 3000 + "1" + ")" * 3000,
]


def test_a_pool_of_threads_cannot_hang_on_pathological_answers():
    """Every call returns within its timeout (plus the time to hand over the answer), from any
    thread, whatever the worker is stuck in; the pool then answers ordinary questions."""
    timeout = 2.0

    def one(prediction):
        t0 = time.perf_counter()
        verdict = answers_match("42", prediction, timeout=timeout)
        return verdict, time.perf_counter() - t0

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, PATHOLOGICAL * 2))
    assert all(verdict is False for verdict, _ in results)
    assert max(seconds for _, seconds in results) < timeout + 1.0, results
    assert answers_match("\\frac{1}{2}", "$0.5$")  # the pool still works after killing workers


def test_timeouts_hold_outside_the_main_thread():
    got = {}

    def run():
        t0 = time.perf_counter()
        got["verdict"] = answers_match("1", PATHOLOGICAL[0] + " + 0.00001", timeout=1.0)
        got["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert not t.is_alive() and got["verdict"] is False and got["seconds"] < 2.0


def test_a_forked_child_starts_its_own_workers():
    import os

    assert answers_match("\\frac{1}{2}", "$0.5$")  # the parent has a worker
    parents = {worker.process.pid for worker in V._POOL._idle}
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child verifies with workers of its own, the parent's pipes untouched
        ok = answers_match("\\frac{1}{3}", "$0.333333333$") and answers_match("x \\geq 5", "x >= 5")
        mine = {worker.process.pid for worker in V._POOL._idle}
        os.write(wfd, b"1" if ok and mine and not mine & parents else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(rfd, 1) == b"1"
    assert answers_match("\\frac{3}{4}", "$0.75$")  # and the parent's still answer
    assert {worker.process.pid for worker in V._POOL._idle} == parents


def test_a_verifier_that_cannot_start_is_a_clear_error_not_zero_reward(monkeypatch):
    """A missing Math-Verify must stop a run with its reason, not score every answer 0."""
    from r1.data.tasks import get_task
    from r1.data.tasks.base import Example
    from r1.errors import R1Error
    from r1.rewards import registry

    monkeypatch.setattr(V, "_WORKER_CODE", "import sys; sys.exit('No module named math_verify')")
    monkeypatch.setattr(V, "_POOL", V._Pool(2))
    V._cache.clear()
    with pytest.raises(R1Error, match="could not start: No module named math_verify"):
        answers_match("\\frac{1}{2}", "0.5")
    task, ex = get_task("gsm8k", {"path": "unused.jsonl"}), Example("e", "q", "\\frac{1}{2}")
    with pytest.raises(R1Error, match="could not start"):
        registry.score(["<answer>0.5</answer>"], [ex], task, {"accuracy": 1.0})

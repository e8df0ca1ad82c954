"""Golden cases for rejection sampling (`r1 filter`)."""

import json
import subprocess
import sys

import pytest

from r1.pipeline.filter import FilterConfig, reject, well_formed

GOOD = "<think>\nWe add 2 and 3 to get 5.\n</think>\n\nThe answer is \\boxed{5}."


def row(id_, completion, gold="5", **kw):
    return {"id": id_, "gold": gold, "completion": completion, **kw}


GOLDEN = [
    (row("p1", GOOD), "kept"),
    (row("p1", "<think>\nWe add 2 and 3 to get 6.\n</think>\n\nThe answer is \\boxed{6}."), "unverified"),
    (row("p1", "The answer is \\boxed{5}."), "malformed"),  # no reasoning block
    (row("p1", "<think>a</think><think>b</think> \\boxed{5}"), "malformed"),  # two think blocks
    (row("p1", "<think>\n我们把二和三相加得到五。\n</think>\n\n\\boxed{5}"), "language"),
    (row("p1", "<think>\nWe add 2 and 3, that makes 5 in total.\n</think>\n\n\\boxed{5}", tokens=500), "overlong"),
    (row("p1", "<think>\n" + "add two and three " * 30 + "\n</think>\n\n\\boxed{5}"), "repetition"),
    (row("p1", GOOD.replace("\n\n", "\n\n\n")), "duplicate"),  # same text up to whitespace
    (row("p1", "<think>\nTwo plus three is five, surely.\n</think>\n\n\\boxed{5}"), "kept"),
    (row("p1", "<think>\nThree plus two gives five as well.\n</think>\n\n\\boxed{5}"), "quota"),
    (row("p2", "<think>\nFour and one make five.\n</think> <answer>5</answer><answer>5</answer>"), "malformed"),
    (row("p2", "<think>\nFour and one make five.\n</think> <answer>5</answer>"), "kept"),
    (row("p3", "<think>\nHalf of ten is five.\n</think>\n\n5.0", gold="5"), "kept"),  # last number, equivalent
]


def test_filter_golden_cases():
    rows = [r for r, _ in GOLDEN]
    res = reject(rows, FilterConfig(max_tokens=200, max_per_prompt=2))
    kept_ids = [id(r) for r in res.kept]
    for r, expected in GOLDEN:
        if expected == "kept":
            assert id(r) in kept_ids, r["completion"]
        else:
            got = next(d["reason"] for d in res.dropped if d["completion"] == r["completion"] and d["id"] == r["id"])
            assert got == expected, (r["completion"], got)
    assert res.counts() == {"kept": 4, "unverified": 1, "malformed": 3, "language": 1, "overlong": 1,
                            "repetition": 1, "duplicate": 1, "quota": 1}


def test_language_target_and_thresholds_are_parameters():
    zh = row("p", "<think>\n我们把二和三相加得到五。\n</think>\n\n\\boxed{5}")
    assert reject([zh], FilterConfig(language="zh")).kept == [zh]
    assert reject([zh], FilterConfig(min_language=0.0)).kept == [zh]


@pytest.mark.parametrize("text,ok", [
    ("<think>x y</think> answer", True),
    ("<think>x y</think>", False),
    ("preamble <think>x</think> answer", False),
    ("reasoning without an opening tag</think> answer", True),  # R1 prefills <think>
    ("<think>x</think> <answer>5</answer>", True),
])
def test_well_formed(text, ok):
    assert well_formed(text) is ok


def test_filter_cli_writes_kept_dropped_and_summary(tmp_path):
    """`r1 filter IN --out DIR`: IN an `r1 generate` folder (or a JSONL file); DIR gets
    kept.jsonl, dropped.jsonl (with reasons), summary.json and config.yaml."""
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r, _ in GOLDEN))
    out = tmp_path / "filtered"
    res = subprocess.run([sys.executable, "-m", "r1.cli.main", "filter", str(tmp_path / "gen"), "--out", str(out),
                          "--max-tokens", "200", "--max-per-prompt", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "kept 4 of 13 samples" in res.stdout and "unverified 1" in res.stdout
    assert len((out / "kept.jsonl").read_text().splitlines()) == 4
    dropped = [json.loads(x) for x in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == 9 and all(d["reason"] for d in dropped)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 13 and summary["kept"] == 4 and summary["malformed"] == 3
    assert "max_per_prompt: 2" in (out / "config.yaml").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "completion": "x"}\n{"id": 2,\n')
    res = subprocess.run([sys.executable, "-m", "r1.cli.main", "filter", str(bad), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "bad.jsonl:2: malformed JSON" in res.stderr

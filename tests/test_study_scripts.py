"""The study scripts under benchmarks/: their arithmetic, on figures made by hand."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_expected_range_matches_the_known_constants():
    """E[max - min] of n standard normals: 1.128 (n 2), 1.693 (3), 2.326 (5), 3.078 (10)."""
    er = load("seed_study").expected_range
    for n, d2 in ((2, 1.128), (3, 1.693), (5, 2.326), (10, 3.078)):
        assert er(n, 1.0) == pytest.approx(d2, abs=2e-3)
    assert er(5, 0.04) == pytest.approx(0.04 * 2.326, abs=1e-4)


def test_seed_table_summarises_and_names_the_noise_spread():
    ss = load("seed_study")
    rows = [{"seed": s, "before": 0.02, "after": a, "after_se": 0.04, "format": 1.0, "eos": 1.0, "wall_s": 240.0,
             "problems": 100, "samples": 2} for s, a in enumerate((0.71, 0.80, 0.74))]
    stats = ss.summarise(rows)
    assert stats["after"]["mean"] == pytest.approx(0.75) and stats["after"]["spread"] == pytest.approx(0.09)
    assert stats["noise_spread"] == pytest.approx(0.04 * 1.693, abs=1e-4)
    text = ss.table("old", rows, stats)
    assert "(71.0–80.0, **9.0**)" in text and "spread by 6.8 points" in text


def test_seed_table_adds_tool_use_and_the_gain_over_the_same_model_without_tools():
    ss = load("seed_study")
    rows = [{"seed": s, "before": 0.15, "after": a, "after_se": 0.03, "format": 0.0, "eos": 1.0, "wall_s": 900.0,
             "problems": 100, "samples": 2, "tool_use": [0.2, u], "calculator_calls": [0.1, u],
             "tools": {"with_tools": {"pass@1": a - 0.01, "pass@1_se": 0.03},
                       "without_tools": {"pass@1": w, "pass@1_se": 0.02}}}
            for s, a, u, w in ((0, 0.9, 0.98, 0.05), (1, 0.8, 0.94, 0.15))]
    stats = ss.summarise(rows)
    assert stats["above_without_tools"]["mean"] == pytest.approx(0.75)
    assert stats["above_without_tools"]["min"] == pytest.approx(0.65)
    text = ss.table("tools", rows, stats)
    assert "| 1 | 20.0 → 94.0 | 0.10 → 0.94 | 79.0 ± 3.0 | 15.0 ± 2.0 | +65.0 |" in text
    assert "**+75.0** (min +65.0)" in text


def test_pipeline_table_pairs_the_stages_on_their_problems(tmp_path):
    pt = load("pipeline_table")
    run = tmp_path / "run"
    results = {"sft": [1, 0, 0, 1], "rl": [1, 1, 0, 1]}  # rl fixes problem 1, keeps the others
    for stage, correct in results.items():
        (run / stage / "eval").mkdir(parents=True)
        (run / stage / "eval" / "samples.jsonl").write_text("".join(
            json.dumps({"id": f"p{i}", "sample": 0, "correct": bool(c)}) + "\n" for i, c in enumerate(correct)))
    (run / "manifest.json").write_text(json.dumps({"stages": [{"name": "sft"}, {"name": "rl"}]}))
    row = pt.run_row(run, None, None)
    assert (row["before"], row["after"]) == ("sft", "rl")
    assert row["stages"]["sft"][0] == 0.5 and row["stages"]["rl"][0] == 0.75
    mean, se = row["diff"]
    assert mean == 0.25 and se == pytest.approx(0.25)  # differences 0, 1, 0, 0: sd 0.5 over sqrt(4)

"""Evaluation: metrics against brute force, golden majority votes, the CLI end to end,
resumption, and an OpenAI-compatible server (a fake one, on loopback)."""

import itertools
import json
import math
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from r1.eval.metrics import majority_vote, mean_ci95, pass_at_k
from r1.rewards.accuracy import answers_match

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GOLDEN = json.loads((Path(__file__).parent / "golden" / "consensus.json").read_text())


def brute_pass_at_k(n, c, k):
    """Share of all k-subsets of n samples (c correct) that hold at least one correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 4, 7, 10])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_the_mean_and_bad_args_raise():
    assert pass_at_k(64, 16, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


@pytest.mark.parametrize("case", GOLDEN)
def test_majority_vote_groups_equivalent_answers(case):
    voted = majority_vote(case["answers"], answers_match)
    assert (voted is not None and answers_match(case["gold"], voted)) is case["voted_correct"]


def test_half_in_three_notations_outvotes_a_repeated_answer():
    voted = majority_vote(["1/2", "0.5", "\\frac{1}{2}", "3", "3"], answers_match)
    assert answers_match("0.5", voted)


def test_ci95():
    values = [1.0] * 6 + [0.0] * 4
    half = 1.96 * math.sqrt(0.24 * 10 / 9) / math.sqrt(10)
    assert mean_ci95(values) == pytest.approx((0.6, 0.6 - half, 0.6 + half))
    assert mean_ci95([1.0, 0.0, 1.0, 0.0]) == (0.5, 0.0, 1.0)  # clipped to [0, 1]
    assert mean_ci95([1.0, 1.0]) == (1.0, 1.0, 1.0)


def r1(*args):
    return subprocess.run([sys.executable, "-m", "r1", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the project")


@needs_data
@pytest.mark.slow
def test_eval_cli_on_tiny_gsm8k_and_resume(tmp_path):
    out = tmp_path / "ev"
    args = ["eval", "--model", "tiny", "--benchmark", "gsm8k", "--data", str(DATA / "gsm8k_test.jsonl"),
            "--limit", "3", "--samples", "2", "--max-new-tokens", "16", "--out", str(out), "--no-progress"]
    res = r1(*args)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "summary.json").read_text())
    assert yaml.safe_load((out / "config.yaml").read_text()) == results["config"]
    assert {"pass@1", "cons@2", "pass@2", "pass@1_ci95", "format_rate", "response_length_mean",
            "response_length_median"} <= set(results["metrics"])
    assert results["seed"] == 0 and "torch" in results["versions"] and results["config"]["samples"] == 2
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert {"id", "sample", "completion", "reasoning", "answer", "correct"} <= set(rows[0])
    assert (out / "report.md").is_file() and (out / "plots" / "response_length_hist.png").is_file()
    # the folder holds work: without --resume it is refused, not overwritten
    before = (out / "samples.jsonl").read_text()
    res = r1(*args)
    assert res.returncode == 2 and "already holds an evaluation: pass --resume" in res.stderr
    # --resume skips what is done: same samples, same numbers
    res = r1(*args, "--resume")
    assert res.returncode == 0 and (out / "samples.jsonl").read_text() == before
    # other settings in the same directory are refused
    res = r1(*args[:-3], "--samples", "3", "--out", str(out), "--resume")
    assert res.returncode == 2 and "other settings (samples)" in res.stderr


@needs_data
def test_interrupted_eval_resumes_to_the_same_numbers(tmp_path):
    from r1.eval.benchmarks import get_benchmark, load_problems
    from r1.eval.runner import EvalConfig, run_eval
    from r1.rollout.sampler import make_sampler

    bench = get_benchmark("gsm8k")
    task, examples = load_problems(bench, str(DATA / "gsm8k_test.jsonl"))
    cfg = EvalConfig(model="tiny", benchmark="gsm8k", samples=2, limit=5, max_new_tokens=8, batch_size=2,
                     fallback=bench.fallback)
    sampler = make_sampler(cfg)
    full = run_eval(cfg, tmp_path / "a", sampler=sampler, task=task, examples=examples, progress=False)
    run_eval(cfg, tmp_path / "b", sampler=sampler, task=task, examples=examples, progress=False)
    lines = (tmp_path / "b" / "samples.jsonl").read_text().splitlines()
    # kill after the first batch, mid-way through writing the second
    (tmp_path / "b" / "samples.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    again = run_eval(cfg, tmp_path / "b", sampler=sampler, task=task, examples=examples, progress=False,
                     resume=True)
    assert again["metrics"] == full["metrics"]
    assert (tmp_path / "a" / "samples.jsonl").read_text() == (tmp_path / "b" / "samples.jsonl").read_text()


class FakeReasoner(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible chat endpoint that answers like deepseek-reasoner:
    the reasoning in `reasoning_content`, the answer in `content`; right for even seeds."""

    calls = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeReasoner.calls.append(body)
        question = body["messages"][-1]["content"]
        gold = GOLDS.get(question.split("\n")[0].strip(), "0")
        answer = gold if body.get("seed", 0) % 2 == 0 else "-1"
        payload = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"The answer is \\boxed{{{answer}}}.",
                "reasoning_content": f"Let me think. Wait, check again: {answer}."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


GOLDS = {}


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeReasoner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_eval_through_an_openai_compatible_server(tmp_path, fake_server):
    data = tmp_path / "q.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    GOLDS.update({r["problem"]: r["answer"] for r in rows})
    args = ["eval", "--model", "fake-reasoner", "--api-base", fake_server, "--api-key", "k",
            "--benchmark", "math500", "--data", str(data), "--samples", "4", "--no-progress"]
    res = r1(*args, "--out", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    res2 = r1(*args, "--out", str(tmp_path / "b"))
    assert res2.returncode == 0, res2.stderr
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["metrics"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["metrics"]
    assert a == b  # same seed, same numbers
    assert a["pass@1"] == 0.5 and a["pass@4"] == 1.0 and a["problems"] == 4
    samples = [json.loads(x) for x in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert all(s["reasoning"].startswith("Let me think") for s in samples)
    assert all(s["completion"].startswith("<think>\nLet me think") for s in samples)
    prompt = FakeReasoner.calls[-1]["messages"]
    assert len(prompt) == 1 and prompt[0]["role"] == "user"  # no system prompt
    assert prompt[0]["content"].endswith("put your final answer within \\boxed{}.")


def test_compare_prints_side_by_side(tmp_path):
    for name, p1 in (("base", 0.25), ("trained", 0.75)):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(
            json.dumps({"model": name, "metrics": {"pass@1": p1, "cons@4": p1}}))
    res = r1("eval", "compare", str(tmp_path / "base"), str(tmp_path / "trained"))
    assert res.returncode == 0, res.stderr
    assert "| pass@1 | 0.250 | 0.750 | +0.500 |" in res.stdout
    res = r1("eval", "compare", str(tmp_path / "base"), str(tmp_path / "nope"))
    assert res.returncode == 2 and "has no summary.json" in res.stderr


def test_eval_bad_input():
    res = r1("eval", "--model", "tiny", "--benchmark", "mmlu", "--out", "/tmp/x")
    assert res.returncode == 2 and "unknown benchmark 'mmlu'" in res.stderr
    res = r1("eval", "--benchmark", "gsm8k", "--out", "/tmp/x")
    assert res.returncode == 2 and "--model is required" in res.stderr


def test_eval_from_a_training_run_uses_its_heldout_set_and_prompts(tmp_path):
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    run = tmp_path / "run"
    GRPOTrainer(build_config(read_yaml(preset_path("tiny")), ["tracking.progress=false", "train.steps=1"]), run).train()
    res = r1("eval", "--model", str(run / "model"), "--from-run", str(run), "--samples", "1",
             "--max-new-tokens", "16", "--temperature", "0.6", "--top-p", "0.95", "--out", str(tmp_path / "ev"),
             "--no-progress")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in (tmp_path / "ev" / "samples.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (run / "eval" / "heldout_after.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [h["id"] for h in held]  # the very same held-out problems
    assert all(r["completion"].startswith("<think>\n") for r in rows)  # the run's forced <think>


@needs_data
def test_math500_breakdown_by_subject_and_level(tmp_path):
    from r1.eval.benchmarks import get_benchmark, load_problems
    from r1.eval.runner import EvalConfig, run_eval

    bench = get_benchmark("math500")
    task, examples = load_problems(bench, str(DATA / "math500.jsonl"))
    assert len(examples) == 500 and all("level" in e.meta and "subject" in e.meta for e in examples)
    cfg = EvalConfig(model="tiny", benchmark="math500", samples=1, limit=6, max_new_tokens=4)
    result = run_eval(cfg, tmp_path, task=task, examples=examples, progress=False)
    levels = result["breakdown"]["level"]
    assert sum(v["problems"] for v in levels.values()) == 6
    assert sum(v["problems"] for v in result["breakdown"]["subject"].values()) == 6
    assert (tmp_path / "plots" / "accuracy_by_level.png").is_file()

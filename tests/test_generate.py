"""`r1 generate`: local sampling, resumption, and an OpenAI-compatible API that fails."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1.errors import R1Error
from r1.pipeline.generate import GenerateConfig, run_generate


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_generation_resumes_to_the_same_file(tmp_path, problems):
    cfg = GenerateConfig(model="tiny", data=str(problems), samples=2, max_new_tokens=12, batch_size=2)
    res = run_generate(cfg, tmp_path / "full", progress=False)
    full = tmp_path / "full" / "samples.jsonl"
    rows = [json.loads(x) for x in full.read_text().splitlines()]
    assert res["samples"] == 10 and json.loads((tmp_path / "full" / "summary.json").read_text())["samples"] == 10
    assert len(rows) == 10 and {r["id"] for r in rows} == {f"q{i}" for i in range(5)}
    assert all(set(r) >= {"id", "sample", "problem", "gold", "completion", "reasoning", "content", "tokens"}
               for r in rows)
    assert rows[0]["gold"] == "0" and "\\boxed{}" in rows[0]["problem"]  # the math instruction is added
    # a killed run: two whole batches, half of the third, and a torn line
    (tmp_path / "part").mkdir()
    part = tmp_path / "part" / "samples.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:5]) + lines[5][:20])
    (tmp_path / "part" / "config.yaml").write_text((tmp_path / "full" / "config.yaml").read_text())
    with pytest.raises(R1Error, match="already holds generated samples: pass --resume"):
        run_generate(cfg, tmp_path / "part", progress=False)
    run_generate(cfg, tmp_path / "part", progress=False, resume=True)
    assert part.read_text() == full.read_text()
    (tmp_path / "part" / "config.yaml").unlink()  # samples of unknown settings are never mixed in
    with pytest.raises(R1Error, match="samples.jsonl without the config.yaml"):
        run_generate(cfg, tmp_path / "part", progress=False, resume=True)
    (tmp_path / "part" / "config.yaml").write_text((tmp_path / "full" / "config.yaml").read_text())
    with pytest.raises(R1Error, match=r"other settings \(seed\)"):
        run_generate(cfg.model_copy(update={"seed": 1}), tmp_path / "part", progress=False, resume=True)


class FlakyReasoner(BaseHTTPRequestHandler):
    """deepseek-reasoner-like answers, after failing: the first two requests get 429, the
    third a 503; a question containing 'forbidden' always gets 400."""

    calls = 0
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FlakyReasoner.lock:
            FlakyReasoner.calls += 1
            n = FlakyReasoner.calls
        question = body["messages"][-1]["content"]
        if "forbidden" in question:
            return self._send(400, {"error": {"message": "content policy", "type": "invalid_request_error"}})
        if n <= 2:
            return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, retry_after="0.05")
        if n == 3:
            return self._send(503, {"error": {"message": "overloaded", "type": "server_error"}})
        number = question.split("What is ")[1].split(" +")[0]
        self._send(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"So \\boxed{{{2 * int(number)}}}.",
                "reasoning_content": f"{number} plus {number} is {2 * int(number)}."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19},
        })

    def _send(self, status, payload, retry_after=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def flaky_server():
    FlakyReasoner.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReasoner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_api_generation_retries_429_and_5xx_and_keeps_the_reasoning(tmp_path, problems, flaky_server):
    cfg = GenerateConfig(api_base=flaky_server, api_model="deepseek-reasoner", data=str(problems), samples=2,
                         concurrency=1, max_retries=4)
    res = run_generate(cfg, tmp_path / "api", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "api" / "samples.jsonl").read_text().splitlines()]
    assert res["samples"] == len(rows) == 10
    assert FlakyReasoner.calls == 13  # 10 answers + 2 × 429 + 1 × 503, each retried
    r = next(x for x in rows if x["id"] == "q3")
    assert r["reasoning"] == "3 plus 3 is 6." and r["content"] == "So \\boxed{6}."
    assert r["completion"] == "<think>\n3 plus 3 is 6.\n</think>\nSo \\boxed{6}." and r["model"] == "deepseek-reasoner"
    # what the filter keeps: every sample verifies
    from r1.pipeline.filter import FilterConfig, reject

    assert len(reject(rows, FilterConfig()).kept) == 5  # the two samples of a prompt are identical: deduplicated


def test_api_rate_limit_spaces_requests(tmp_path, problems, flaky_server):
    FlakyReasoner.calls = 3  # no failures this time
    cfg = GenerateConfig(api_base=flaky_server, data=str(problems), samples=2, concurrency=4, rate_limit=20)
    t0 = time.perf_counter()
    run_generate(cfg, tmp_path / "rl", progress=False)
    assert time.perf_counter() - t0 >= 9 / 20  # 10 requests, at most 20 a second


def test_api_client_errors_stop_with_a_clear_message_and_keep_finished_batches(tmp_path, flaky_server):
    FlakyReasoner.calls = 3
    path = tmp_path / "q.jsonl"
    rows = [{"id": "a", "problem": "What is 1 + 1?", "answer": "2"},
            {"id": "b", "problem": "What is forbidden + 1?", "answer": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = GenerateConfig(api_base=flaky_server, data=str(path), samples=1, batch_size=1, concurrency=1)
    with pytest.raises(R1Error, match="API request .* failed: .*400"):
        run_generate(cfg, tmp_path / "o", progress=False)
    kept = [json.loads(x) for x in (tmp_path / "o" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["a"]  # the batch before the error is on disk


def test_generate_needs_a_model_or_an_endpoint(tmp_path, problems):
    with pytest.raises(R1Error, match="--model SPEC .* or --api-base URL"):
        run_generate(GenerateConfig(data=str(problems)), tmp_path / "never", progress=False)
    assert not list(tmp_path.glob("never*"))


def test_generation_from_a_run_samples_its_training_problems_only(tmp_path):
    """`from_run` (and a pipeline's rejection sampling) draws from the run's training split, so
    the problems the run is scored on never reach the data it is fine-tuned on."""
    from r1.config import build_config, dump_config
    from r1.data.tasks import build_task
    from r1.pipeline.generate import GenerateConfig, _examples, resolve_run

    cfg = build_config({"seed": 3, "task": {"name": "arithmetic", "train_size": 50, "heldout_size": 20}})
    dump_config(cfg, tmp_path / "config.yaml")
    train, held = build_task(cfg).splits(50, 20)
    gen = resolve_run(GenerateConfig(from_run=str(tmp_path), limit=30))
    _, examples = _examples(gen)
    questions = {e.question for e in examples}
    assert len(questions) == 30 and questions <= {e.question for e in train}
    assert not questions & {e.question for e in held}

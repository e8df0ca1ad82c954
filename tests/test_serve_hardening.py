"""`r1 serve` against hostile and unusual input: one request can fail only itself, every
answer is OpenAI-shaped, and the clients people use (the openai SDK, DeepSeek's own stream
loop) work. The fuzz tests are in test_serve_fuzz.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from serve_support import API_KEY, QUESTIONS, content_of, hook_passes, make_server, question, reasoning_of


def post(server, path, body, *, key=API_KEY, content_type="application/json", **kw):
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    if content_type:
        headers["Content-Type"] = content_type
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=data, headers=headers, timeout=60, **kw)


def assert_openai_error(r, status, code=None, param=None):
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def assert_serving(server, client):
    import httpx

    assert httpx.get(server.url + "/health").status_code == 200
    a, b = QUESTIONS[4]
    r = client.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                       temperature=0, max_tokens=64)
    assert r.choices[0].message.content == content_of(a, b)


HI = [{"role": "user", "content": "hi"}]


# -- 1. one request must never take the server down -------------------------------------------

@pytest.mark.parametrize("seed, n", [(2**64, 1), (2**64 - 1, 2), (2**63 - 1, 2), (-(2**63) - 1, 1), (10**30, 1)])
def test_out_of_range_seeds_are_400_and_the_server_goes_on(server, client, seed, n):
    r = post(server, "/v1/chat/completions", {"messages": HI, "seed": seed, "n": n, "max_tokens": 4})
    assert_openai_error(r, 400, "invalid_value", "seed")
    assert_serving(server, client)


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), 0])
def test_seeds_at_the_int64_edges_are_answered(client, seed):
    r = client.chat.completions.create(model="tiny-answers", messages=HI, seed=seed, max_tokens=4, temperature=1.0)
    again = client.chat.completions.create(model="tiny-answers", messages=HI, seed=seed, max_tokens=4, temperature=1.0)
    assert r.choices[0].message.reasoning_content == again.choices[0].message.reasoning_content


def _engine_loop(engine, requests):
    """Submit EngineRequests straight to an engine (no validation in front) and collect
    (tokens, finish, error) for each."""
    async def run():
        handles = [engine.submit(r) for r in requests]

        async def drain(h):
            toks, last = [], None
            async for step in h:
                toks += step.token_ids
                last = step
            return toks, last.finish, last.error

        return await asyncio.gather(*(drain(h) for h in handles))

    return asyncio.run(run())


def test_engine_isolates_a_request_whose_generator_fails(answering_model):
    """The original crash: a seed torch cannot take, straight into the engine. Only that
    request fails; the ones admitted with it and after it are answered."""
    from r1.serve.interface import EngineRequest
    from r1.serve.launch import build_engine

    engine = build_engine(answering_model, model_name="x", max_batch=8, max_queue=8, device="cpu")
    engine.start()
    try:
        tok = engine.tokenizer
        good = tok("<|user|>\nWhat is 2 + 3?</s>\n<|assistant|>\n<think>\n", add_special_tokens=False).input_ids
        reqs = [EngineRequest(good, 24, temperature=0), EngineRequest(good, 24, temperature=1.0, seed=2**70),
                EngineRequest(good, 24, temperature=0)]
        out = _engine_loop(engine, reqs)
        assert out[1][1] == "error" and "overflow" in out[1][2].lower()
        assert out[0][1] in ("stop", "length") and out[0][0] == out[2][0] and len(out[0][0]) > 5
        assert tok.decode(out[0][0]).startswith(reasoning_of(2, 3))
        assert engine.stats()["healthy"] and engine.stats()["request_errors"] == 1
        out = _engine_loop(engine, [EngineRequest(good, 8, temperature=0)])  # and it goes on
        assert out[0][1] == "length"
    finally:
        engine.shutdown()


def test_a_failing_prefill_or_sampler_fails_only_its_request(answering_model, monkeypatch):
    """Faults injected into the model's prefill (for one prompt) and into the sampler (for
    one temperature), with other requests admitted and decoded in the same batches."""
    import openai

    import r1.rollout.sampling as sampling

    real_sample = sampling.sample_tokens

    def flaky_sample(logits, temperature, top_p, generator, uniforms=None):
        if abs(temperature - 1.234) < 1e-9:
            raise RuntimeError("injected sampler fault")
        return real_sample(logits, temperature, top_p, generator, uniforms)

    monkeypatch.setattr(sampling, "sample_tokens", flaky_sample)
    with make_server(answering_model, max_batch=16) as srv:
        marker = srv.engine.tokenizer("POISON", add_special_tokens=False).input_ids

        def poisoned(kind, ids):
            time.sleep(0.01)
            if kind == "prefill" and any(marker == row[i:i + len(marker)] for row in ids.tolist()
                                         for i in range(len(row))):
                raise RuntimeError("injected prefill fault")

        hook_passes(srv.engine, poisoned)

        async def burst():
            c = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)

            def ask(content, **kw):
                return c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": content}],
                                                 max_tokens=64, **{"temperature": 0, **kw})

            async with c:
                calls = [ask(question(a, b)) for a, b in QUESTIONS[:4]]
                calls += [ask("POISON here"), ask("hello", temperature=1.234)]
                calls += [ask(question(a, b)) for a, b in QUESTIONS[4:]]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(burst())
        for i in (4, 5):
            assert isinstance(results[i], openai.InternalServerError), results[i]
            assert results[i].body["code"] == "engine_error"
        assert "prefill" in results[4].body["message"] and "sampler" in results[5].body["message"]
        answers = [r for i, r in enumerate(results) if i not in (4, 5)]
        for (a, b), r in zip(QUESTIONS, answers):
            assert r.choices[0].message.content == content_of(a, b), r
        assert srv.engine.stats()["healthy"] and srv.engine.stats()["max_rows"] > 1


def test_a_failing_decode_step_ends_its_rows_and_the_queue_goes_on(answering_model):
    import openai

    with make_server(answering_model, max_batch=4) as srv:
        state = {"decode_steps": 0}

        def fails_once(kind, ids):
            if kind == "decode":
                state["decode_steps"] += 1
                if state["decode_steps"] == 3:
                    raise RuntimeError("injected decode fault")

        hook_passes(srv.engine, fails_once)
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="tiny-answers", messages=HI, max_tokens=32, temperature=0)
        assert "decode fault" in e.value.body["message"]
        a, b = QUESTIONS[0]
        r = c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                      max_tokens=64, temperature=0)
        assert r.choices[0].message.content == content_of(a, b)
        assert srv.engine.stats()["healthy"]


def test_a_broken_engine_answers_every_waiting_request_and_health_says_so_until_it_heals(answering_model):
    import httpx
    import openai

    with make_server(answering_model, max_batch=2) as srv:
        def broken(kind, ids):
            time.sleep(0.02)
            raise RuntimeError("the device is gone")

        restore = hook_passes(srv.engine, broken)

        async def many():
            async with openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=30) as c:
                return await asyncio.gather(*(c.chat.completions.create(
                    model="tiny-answers", messages=HI, max_tokens=8) for _ in range(12)), return_exceptions=True)

        t0 = time.monotonic()
        results = asyncio.run(many())
        assert time.monotonic() - t0 < 20  # nobody was left waiting for the client timeout
        assert all(isinstance(r, openai.InternalServerError) for r in results), results
        assert "device is gone" in results[0].body["message"]
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 503 and health.json()["failures_in_a_row"] >= 8
        restore()  # the device is back: the next request works, health recovers
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        a, b = QUESTIONS[5]
        r = c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                      temperature=0, max_tokens=64)
        assert r.choices[0].message.content == content_of(a, b)
        assert httpx.get(srv.url + "/health").status_code == 200


_SLOW_SERVE = """
import sys, time
from r1.serve import engine as E
step = E.HFBatchEngine._step
def slow(self):
    time.sleep(0.05)
    return step(self)
E.HFBatchEngine._step = slow
from r1.cli.main import main
sys.argv = ["r1", "serve"] + sys.argv[1:]
main()
"""


def test_first_sigterm_shuts_down_with_streams_in_flight(answering_model, tmp_path):
    """A real `r1 serve` process, slowed so that two streams are mid-answer: one SIGTERM
    ends it within the grace period, and each stream ends with an OpenAI error event."""
    import httpx

    from serve_support import free_port, wait_healthy

    port = free_port()
    script = tmp_path / "slow_serve.py"
    script.write_text(_SLOW_SERVE)
    proc = subprocess.Popen([sys.executable, str(script), "--model", answering_model, "--port", str(port),
                             "--shutdown-grace", "1", "--max-tokens", "512"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, 90, log=proc.stdout.read)
        events: list[list[str]] = [[], []]

        def stream(i):
            body = {"messages": HI, "stream": True, "max_tokens": 500, "ignore_eos": True, "temperature": 1.0}
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events[i].append(line[6:])

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        while min(len(e) for e in events) < 5:
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        took = time.monotonic() - t0
        log = proc.stdout.read()
        # uvicorn shuts down cleanly, then re-raises the signal it caught (exit status -15)
        assert code in (0, -signal.SIGTERM) and "Finished server process" in log, log
        assert "Traceback" not in log, log
        for t in threads:
            t.join(timeout=10)
        assert took < 8, took
        for ev in events:
            assert ev[-1] == "[DONE]"
            err = json.loads(ev[-2])["error"]
            assert err["code"] == "shutting_down"
    finally:
        if proc.poll() is None:
            proc.kill()


# -- 2. no 500 and no other shape for bad input -------------------------------------------------

def test_lone_surrogates_are_400_naming_the_field(server, client):
    raw = '{"messages": [{"role": "user", "content": "\\ud800 hi"}]}'
    assert_openai_error(post(server, "/v1/chat/completions", raw), 400, "invalid_value", "messages.0.content")
    raw = '{"prompt": "ok", "stop": ["\\udfff"]}'
    assert_openai_error(post(server, "/v1/completions", raw), 400, "invalid_value", "stop.0")
    raw = '{"messages": [{"role": "user", "content": "hi", "\\ud83d": 1}]}'
    assert_openai_error(post(server, "/v1/chat/completions", raw), 400, "invalid_value")
    # a real emoji, escaped as a surrogate pair, is fine
    raw = '{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 2}'
    assert post(server, "/v1/chat/completions", raw).status_code == 200
    assert_serving(server, client)


@pytest.mark.parametrize("raw", [
    "[" * 100_000 + "]" * 100_000,
    '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"messages": [{"role": "user", "content": "hi"}], "x": ' + "[" * 70 + "]" * 70 + "}",
    '{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    '{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
    '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + "9" * 5000 + "}",
    '{"messages": [{"role": "user", "content": "hi"}]} trailing',
    b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}',
])
def test_hostile_json_is_400_invalid_json(server, client, raw):
    assert_openai_error(post(server, "/v1/chat/completions", raw), 400, "invalid_json")


def test_content_type_must_be_json(server, client):
    body = json.dumps({"messages": HI, "max_tokens": 2})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        assert_openai_error(post(server, "/v1/chat/completions", body, content_type=ctype), 415,
                            "unsupported_media_type")
    assert post(server, "/v1/chat/completions", body, content_type="application/json; charset=utf-8").status_code == 200


def test_chunked_body_is_cut_at_the_limit(server, client):
    """A chunked body (no Content-Length to check first) of 16 MB: the 413 arrives while the
    client is still sending, soon after the 4 MB limit, so the body was never read whole."""
    import select
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    piece = b"x" * (256 << 10)
    sent, answered = 0, False
    try:
        for i in range(64):
            data = (b'{"messages": [{"role": "user", "content": "' if i == 0 else b"") + piece
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            sent += len(data)
            if select.select([sock], [], [], 0.05)[0]:
                answered = True
                break
    except (BrokenPipeError, ConnectionResetError):
        answered = True
    reply = b""
    while b"}}" not in reply:  # the headers, then the JSON error body
        more = sock.recv(65536)
        if not more:
            break
        reply += more
    reply = reply.decode(errors="replace")
    sock.close()
    assert answered and reply.startswith("HTTP/1.1 413"), reply[:200]
    assert '"body_too_large"' in reply
    assert sent < 6 << 20, sent  # cut soon after 4 MB, far from the 16 MB the client meant to send
    assert_serving(server, client)


def test_unknown_routes_methods_and_bugs_are_openai_shaped(server):
    import httpx

    assert_openai_error(httpx.get(server.url + "/v1/chat/completions"), 405, "method_not_allowed")
    assert_openai_error(httpx.delete(server.url + "/v1/models"), 405)
    assert_openai_error(httpx.get(server.url + "/v2/anything"), 404, "not_found")
    assert_openai_error(httpx.get(server.url + "/static/../../etc/passwd"), 404)


# -- 3. wire compatibility: DeepSeek's and OpenAI's clients -------------------------------------

def test_deepseek_documented_stream_loop_runs_to_the_end(client):
    """DeepSeek's reasoning-model guide, verbatim in its logic: every delta is read for both
    attributes, and content is appended whenever reasoning_content is empty."""
    a, b = QUESTIONS[1]
    response = client.chat.completions.create(model="tiny-answers", temperature=0, max_tokens=64, stream=True,
                                              messages=[{"role": "user", "content": question(a, b)}])
    reasoning_content = ""
    content = ""
    for chunk in response:
        if chunk.choices[0].delta.reasoning_content:
            reasoning_content += chunk.choices[0].delta.reasoning_content
        else:
            content += chunk.choices[0].delta.content
    assert reasoning_content.strip() == reasoning_of(a, b) and content.strip() == content_of(a, b)


def test_stream_chunks_carry_both_fields_and_usage_only_at_the_end(server):
    import httpx

    for include in (False, True):
        body = {"messages": [{"role": "user", "content": question(2, 3)}], "stream": True, "temperature": 0,
                "max_tokens": 64, **({"stream_options": {"include_usage": True}} if include else {})}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        for ch in chunks:
            assert "usage" in ch and ch["object"] == "chat.completion.chunk"
            for c in ch["choices"]:
                assert "content" in c["delta"] and "reasoning_content" in c["delta"] and "logprobs" in c
                assert c["delta"]["content"] is not None or c["delta"]["reasoning_content"] is not None
        with_usage = [i for i, ch in enumerate(chunks) if ch["usage"] is not None]
        assert with_usage == [len(chunks) - 1]  # only the last
        assert (chunks[-1]["choices"] == []) == include  # OpenAI's extra usage chunk, or DeepSeek's last chunk
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "reasoning_content": None}


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools.0.type"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
])
def test_unsupported_parameters_are_refused_not_ignored(client, extra, param):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-answers", messages=HI, **extra)
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == param
    assert "not supported" in e.value.body["message"] or "only" in e.value.body["message"]


def test_harmless_parameters_are_accepted(client):
    r = client.chat.completions.create(model="tiny-answers", messages=HI, max_tokens=4, user="u1", store=False,
                                       metadata={"k": "v"}, tool_choice="none", response_format={"type": "text"},
                                       parallel_tool_calls=False, reasoning_effort="low")
    assert r.choices[0].message.reasoning_content


def test_chat_logprobs_match_the_model(client, server):
    """logprobs: one entry per generated token (reasoning included), each the model's own
    log-probability; top_logprobs ranked, the greedy token first."""
    import torch

    a, b = QUESTIONS[2]
    msgs = [{"role": "user", "content": question(a, b)}]
    r = client.chat.completions.create(model="tiny-answers", messages=msgs, temperature=0, max_tokens=64,
                                       logprobs=True, top_logprobs=3)
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens
    text = "".join(e.token for e in entries)
    assert text.replace("</s>", "").strip().endswith(content_of(a, b))
    for e in entries:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert e.top_logprobs[0].token == e.token and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
        assert e.bytes == list(e.token.encode())
    # teacher-forced log-probs of the same tokens, from the same (bf16) weights
    from r1.data.prompts import PromptFormat
    from r1.serve.text import render_chat
    from r1.serve.protocol import ChatMessage

    engine = server.engine
    tok = engine.tokenizer
    prompt, _ = render_chat([ChatMessage(**m) for m in msgs], tok, PromptFormat.as_sent())
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    c_ids = tok(text, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0, len(p_ids) - 1:-1].float()
    ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c_ids)[:, None])[:, 0]
    got = torch.tensor([e.logprob for e in entries])
    assert len(c_ids) == len(entries) and (ref - got).abs().max() < 0.1
    # streamed: the same entries, spread over the chunks
    stream = client.chat.completions.create(model="tiny-answers", messages=msgs, temperature=0, max_tokens=64,
                                            logprobs=True, stream=True)
    streamed = [e.logprob for ch in stream for c in ch.choices if c.logprobs for e in c.logprobs.content]
    assert streamed == pytest.approx([e.logprob for e in entries], abs=1e-6)


def test_completion_logprobs_and_token_id_prompts(client, server):
    tok = server.engine.tokenizer
    prompt = "<|user|>\nWhat is 2 + 3?</s>\n<|assistant|>\n<think>\n"
    ids = tok(prompt, add_special_tokens=False).input_ids
    by_text = client.completions.create(model="tiny-answers", prompt=prompt, max_tokens=32, temperature=0, logprobs=2)
    by_ids = client.completions.create(model="tiny-answers", prompt=ids, max_tokens=32, temperature=0, logprobs=2)
    by_list = client.completions.create(model="tiny-answers", prompt=[ids], max_tokens=32, temperature=0)
    assert by_text.choices[0].text == by_ids.choices[0].text == by_list.choices[0].text
    assert by_text.choices[0].text.startswith(reasoning_of(2, 3))
    assert by_ids.usage.prompt_tokens == len(ids)
    lp = by_text.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == by_text.usage.completion_tokens
    assert lp.text_offset[0] == 0 and all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.token_logprobs == pytest.approx(by_ids.choices[0].logprobs.token_logprobs, abs=1e-6)
    r = post(server, "/v1/completions", {"prompt": [5, len(tok) + 10]})
    assert_openai_error(r, 400, "invalid_value", "prompt")
    assert_openai_error(post(server, "/v1/completions", {"prompt": []}), 400, param="prompt")
    assert_openai_error(post(server, "/v1/completions", {"prompt": [[1], [2]]}), 400, param="prompt")
    assert_openai_error(post(server, "/v1/completions", {"prompt": "x", "echo": True, "logprobs": 1}), 400,
                        "unsupported_parameter")


def test_tool_messages_and_system_only_conversations_are_accepted(client):
    r = client.chat.completions.create(model="tiny-answers", max_tokens=8, messages=[
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    assert r.choices[0].finish_reason in ("stop", "length")
    r = client.chat.completions.create(model="tiny-answers", max_tokens=8,
                                       messages=[{"role": "system", "content": "You are terse."}])
    assert r.choices[0].finish_reason in ("stop", "length")


def test_render_chat_writes_tool_turns_and_system_only(server):
    from r1.serve.protocol import ChatMessage
    from r1.data.prompts import PromptFormat
    from r1.serve.text import render_chat

    tok = server.engine.tokenizer
    text, _ = render_chat([ChatMessage(role="system", content="Only me.")], tok, PromptFormat.as_sent())
    assert "<|user|>\nOnly me.</s>" in text
    msgs = [ChatMessage(role="user", content="Q"),
            ChatMessage(role="assistant", tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": "{\"x\":1}"}}]),
            ChatMessage(role="tool", tool_call_id="c1", content="42")]
    text, prefill = render_chat(msgs, tok, PromptFormat.as_sent())
    # the call as the model writes it, its result after it, and the same turn left open
    assert text.endswith('<think>\n</think>\n<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>\n'
                         '<tool_response>\n42\n</tool_response>\n') and prefill == ""


def test_max_tokens_over_the_room_left_is_400_like_vllm(server, client):
    long = "word " * 180  # ~900 byte-level tokens of the 1024-token context
    r = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": long}], "max_tokens": 200})
    err = assert_openai_error(r, 400, "context_length_exceeded", "max_tokens")
    assert "1024" in err["message"]
    # without max_tokens, the answer fits in what is left
    r = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": long}], "ignore_eos": True,
                                               "temperature": 1.0})
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] <= 1024


def test_stream_options_without_stream_is_400(server):
    r = post(server, "/v1/chat/completions", {"messages": HI, "stream_options": {"include_usage": True}})
    assert_openai_error(r, 400, "invalid_value", "stream_options")


def test_openapi_document_describes_bodies_errors_and_auth(server):
    import httpx

    doc = httpx.get(server.url + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, name in (("/v1/chat/completions", "ChatCompletionRequest"), ("/v1/completions", "CompletionRequest")):
        op = doc["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(name)
        assert {"400", "401", "413", "415", "429", "500", "503", "504"} <= set(op["responses"])
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
        assert op["security"] == [{"bearer": []}]
        assert "text/event-stream" in op["responses"]["200"]["content"]
    assert "messages" in schemas["ChatCompletionRequest"]["required"]
    assert schemas["ChatCompletionRequest"]["properties"]["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert {"ChatCompletion", "ChatCompletionChunk", "Completion", "ErrorResponse"} <= set(schemas)

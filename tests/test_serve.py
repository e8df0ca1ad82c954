"""`r1 serve`: the reasoning split, the batching engine, and the API through the official
`openai` client against a real server on loopback (a tiny model that has learnt answers)."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from serve_support import API_KEY, QUESTIONS, content_of, hook_passes, make_server, question, reasoning_of


def _post(server, path, body, key=API_KEY):
    import httpx

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=data, headers=headers, timeout=60)


def test_stop_text_holds_back_partial_stops():
    from r1.serve.text import StopText

    s = StopText(("</answer>", "STOP"))
    assert s.feed("<answer>5</ans") == "<answer>5"
    assert not s.stopped
    assert s.feed("wer> tail") == ""
    assert s.stopped
    s = StopText(("STOP",))
    assert s.feed("ST") == "" and s.feed("ay") == "STay" and s.finish() == ""
    s = StopText((), keep=("</answer>",))  # a training run's stop: the answer keeps its closing tag
    assert s.feed("<answer> 19 </ans") == "<answer> 19 " and s.feed("wer> more") == "</answer>" and s.stopped


def test_detokenizer_never_splits_a_character(tiny):
    from r1.serve.text import Detokenizer

    _, tok = tiny
    text = "héllo → 数学 ok"
    ids = tok(text, add_special_tokens=False).input_ids  # byte-level: é, →, 数 span several tokens
    d = Detokenizer(tok)
    deltas = [d.feed([i]) for i in ids] + [d.flush()]
    assert "".join(deltas) == text
    assert all("\ufffd" not in x for x in deltas)


def test_render_chat_folds_the_system_prompt_and_forces_think(tiny):
    from r1.data.prompts import PromptFormat
    from r1.serve.text import render_chat
    from r1.serve.protocol import ChatMessage

    _, tok = tiny
    msgs = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi"),
            ChatMessage(role="assistant", content="Hello", reasoning_content="secret"),
            ChatMessage(role="user", content=[{"type": "text", "text": "Sum?"}])]
    text, prefill = render_chat(msgs, tok, PromptFormat.as_sent())
    assert prefill == "<think>\n" and text.endswith("<|assistant|>\n<think>\n")
    assert "<|system|>" not in text and "<|user|>\nBe brief.\n\nHi</s>" in text
    assert "secret" not in text and "<|assistant|>\nHello</s>" in text and "Sum?" in text
    text, prefill = render_chat(msgs, tok, PromptFormat(force_think=False))
    assert prefill == "" and text.endswith("<|assistant|>\n")
    # a training run's prompt: its template wraps the last question
    text, _ = render_chat(msgs, tok, PromptFormat(template="Q: {question} ({answer_hint})", answer_hint="a number"))
    assert "Q: Sum? (a number)" in text


# -- the API through the official client ---------------------------------------------------

def test_chat_non_stream_reasoning_content_and_usage(client, server):
    a, b = QUESTIONS[2]
    r = client.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                       temperature=0, max_tokens=64)
    msg = r.choices[0].message
    assert msg.reasoning_content == reasoning_of(a, b)
    assert msg.content == content_of(a, b)
    assert r.choices[0].finish_reason == "stop"
    from r1.data.prompts import PromptFormat
    from r1.serve.text import render_chat
    from r1.serve.protocol import ChatMessage

    tok = server.engine.tokenizer
    text, _ = render_chat([ChatMessage(role="user", content=question(a, b))], tok, PromptFormat.as_sent())
    completion = f"{reasoning_of(a, b)}\n</think>\n{content_of(a, b)}{tok.eos_token}"
    assert r.usage.prompt_tokens == len(tok(text, add_special_tokens=False).input_ids)
    assert r.usage.completion_tokens == len(tok(completion, add_special_tokens=False).input_ids)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.completion_tokens_details.reasoning_tokens == len(
        tok(reasoning_of(a, b) + "\n</think>", add_special_tokens=False).input_ids)


def test_chat_stream_sends_reasoning_then_content(client):
    a, b = QUESTIONS[3]
    stream = client.chat.completions.create(
        model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}], temperature=0,
        max_tokens=64, stream=True, stream_options={"include_usage": True})
    kinds, reasoning, content, finish, usage, ids = [], "", "", None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            d = choice.delta
            r = getattr(d, "reasoning_content", None)
            if r:
                kinds.append("r")
                reasoning += r
            if d.content:
                kinds.append("c")
                content += d.content
            finish = choice.finish_reason or finish
    assert reasoning.rstrip() == reasoning_of(a, b) and content.rstrip() == content_of(a, b)
    assert kinds.count("r") > 1 and kinds.count("c") > 1  # really streamed, token by token
    assert kinds == sorted(kinds, key=lambda k: k != "r")  # every reasoning delta before any content delta
    assert finish == "stop" and len(ids) == 1
    whole = client.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                           temperature=0, max_tokens=64)
    assert usage.model_dump() == whole.usage.model_dump()


def test_seeded_sampling_is_reproducible_and_n_choices(client):
    msgs = [{"role": "user", "content": "Tell me something."}]
    one = client.chat.completions.create(model="tiny-answers", messages=msgs, temperature=1.0, seed=7, max_tokens=24, n=3)
    two = client.chat.completions.create(model="tiny-answers", messages=msgs, temperature=1.0, seed=7, max_tokens=24, n=3)
    texts = [c.message.reasoning_content for c in one.choices]
    assert texts == [c.message.reasoning_content for c in two.choices]
    assert [c.index for c in one.choices] == [0, 1, 2]
    assert len(set(texts)) == 3  # the choices are different samples (seeds 7, 8, 9)
    assert one.usage.completion_tokens == two.usage.completion_tokens <= 3 * 24
    assert all(c.finish_reason == "stop" for c in one.choices if c.message.content) 


def test_stop_strings_cut_the_answer(client):
    a, b = QUESTIONS[0]
    r = client.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                       temperature=0, stop=["</answer>"])
    assert r.choices[0].message.content == f"<answer>{a + b}"
    assert r.choices[0].finish_reason == "stop"


def test_completions_and_models(client, server):
    r = client.completions.create(model="tiny-answers", prompt="<|user|>\nWhat is 2 + 3?</s>\n<|assistant|>\n<think>\n",
                                  max_tokens=64, temperature=0)
    assert r.choices[0].text.startswith(reasoning_of(2, 3)) and r.choices[0].text.rstrip().endswith(content_of(2, 3))
    chunks = list(client.completions.create(model="tiny-answers", prompt="hello", max_tokens=8, stream=True, temperature=0))
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-answers"]
    import httpx

    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny-answers"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<title>r1 chat</title>" in page.text
    assert httpx.get(server.url + "/static/app.js").status_code == 200


def test_wrong_or_missing_key_is_401(server):
    import openai

    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401 and "API key" in e.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    import httpx

    assert httpx.post(server.url + "/v1/chat/completions", json={"messages": []}).status_code == 401


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "assistant", "content": "only an assistant turn"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
])
def test_out_of_range_parameters_are_400(client, body, param):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-answers", **body)
    assert e.value.status_code == 400
    assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error"


def test_malformed_requests_are_4xx_not_500(server):
    for payload in (b'{"messages": [', b"not json", b"[1, 2]", "\xff".encode("latin-1")):
        r = _post(server, "/v1/chat/completions", payload)
        assert r.status_code == 400, payload
        assert r.json()["error"]["code"] == "invalid_json"
    r = _post(server, "/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = _post(server, "/v1/completions", {"prompt": "x" * 5000, "max_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = _post(server, "/v1/completions", {"prompt": ["a", "b"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = _post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "presence_penalty": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    r = _post(server, "/v1/chat/completions", {"model": "tiny-answers"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = _post(server, "/v1/nothing", {})
    assert r.status_code == 404 and "error" in r.json()


def test_client_disconnect_stops_generation(server):
    import httpx

    engine = server.engine
    before = engine.stats()["tokens"]
    body = {"messages": [{"role": "user", "content": "Talk."}], "stream": True, "max_tokens": 256,
            "temperature": 1.0, "seed": 3}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
    deadline = time.monotonic() + 10
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats()["running"] == 0
    used = engine.stats()["tokens"] - before
    time.sleep(0.5)
    assert engine.stats()["tokens"] - before == used < 200  # it stopped, far short of 256 tokens


def _slow(engine, seconds):
    hook_passes(engine, lambda kind, ids: time.sleep(seconds))  # every pass (prefill or decode step) takes longer


def test_request_timeout_is_504(answering_model):
    import openai

    with make_server(answering_model, request_timeout=0.2) as srv:
        _slow(srv.engine, 0.05)  # ~4 steps fit in the timeout; the shortest answer is 19 tokens
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(2, 3)}],
                                      max_tokens=256, temperature=0)
        assert e.value.status_code == 504 and e.value.body["code"] == "timeout"
        time.sleep(0.2)
        assert srv.engine.stats()["running"] == 0


def test_full_queue_is_429(answering_model):
    import openai

    with make_server(answering_model, max_batch=1, max_queue=1) as srv:
        _slow(srv.engine, 0.02)

        async def burst():
            async with openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60) as ac:
                calls = [ac.chat.completions.create(model="tiny-answers", max_tokens=8, temperature=1.0,
                                                    messages=[{"role": "user", "content": "Go."}]) for _ in range(12)]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(burst())
        rejected = [r for r in results if isinstance(r, openai.RateLimitError)]
        done = [r for r in results if not isinstance(r, Exception)]
        assert rejected and done and len(rejected) + len(done) == 12  # nothing else went wrong
        assert rejected[0].status_code == 429 and rejected[0].response.headers["retry-after"] == "1"
        assert rejected[0].body["code"] == "queue_full"


# -- batching -------------------------------------------------------------------------------

async def _ask_all(url: str, requests: list[tuple[int, int]], max_tokens: int = 64) -> list[dict]:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)

    async def one(i: int, a: int, b: int) -> dict:
        await asyncio.sleep(0.002 * i)  # arrivals spread out: later ones join a running batch
        stream = await client.chat.completions.create(
            model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}], temperature=0,
            max_tokens=max_tokens, stream=True, stream_options={"include_usage": True})
        out = {"reasoning": "", "content": "", "finish": None, "ids": set(), "tokens": 0}
        async for chunk in stream:
            out["ids"].add(chunk.id)
            if chunk.usage:
                out["tokens"] = chunk.usage.completion_tokens
            for ch in chunk.choices:
                out["reasoning"] += getattr(ch.delta, "reasoning_content", None) or ""
                out["content"] += ch.delta.content or ""
                out["finish"] = ch.finish_reason or out["finish"]
        return out

    async with client:
        return await asyncio.gather(*(one(i, a, b) for i, (a, b) in enumerate(requests)))


def test_64_concurrent_streams_all_complete_unmixed(server):
    """64 streams at once over 8 questions: each gets exactly its own question's answer."""
    requests = [QUESTIONS[i % len(QUESTIONS)] for i in range(64)]
    random.Random(1).shuffle(requests)
    steps0 = server.engine.stats()
    results = asyncio.run(_ask_all(server.url, requests))
    stats = server.engine.stats()
    assert len(results) == 64
    for (a, b), res in zip(requests, results):
        assert res["finish"] == "stop" and len(res["ids"]) == 1
        assert res["reasoning"].strip() == reasoning_of(a, b), (a, b, res)
        assert res["content"].strip() == content_of(a, b), (a, b, res)
        assert res["tokens"] > 0
    # they shared forward passes: far fewer decode steps than tokens
    steps = stats["steps"] - steps0["steps"]
    tokens = stats["tokens"] - steps0["tokens"]
    assert tokens == sum(r["tokens"] for r in results)
    assert stats["max_rows"] > 8 and steps < tokens / 4


def test_continuous_batching_matches_one_at_a_time(answering_model):
    """Requests that join a running batch (left-padded caches stacked) decode exactly as
    they do alone, in fp32: same tokens, sampled with per-request seeds."""
    import openai

    msgs = [[{"role": "user", "content": t}] for t in ("Hello there.", "x", "A much longer message " * 6, "Why?")]

    async def run(url: str) -> list[str]:
        c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)

        async def one(i):
            await asyncio.sleep(0.05 * i)
            r = await c.chat.completions.create(model="tiny-answers", messages=msgs[i], temperature=1.0,
                                                seed=100 + i, max_tokens=40 + 10 * i)
            return r.choices[0].message.reasoning_content

        async with c:
            return await asyncio.gather(*(one(i) for i in range(len(msgs))))

    with make_server(answering_model, max_batch=8, precision="fp32") as srv:
        _slow(srv.engine, 0.01)  # each answer takes > 0.4 s, so the later arrivals join a running batch
        batched = asyncio.run(run(srv.url))
        assert srv.engine.stats()["max_rows"] > 1
    with make_server(answering_model, max_batch=1, precision="fp32") as srv:
        alone = asyncio.run(run(srv.url))
        assert srv.engine.stats()["max_rows"] == 1
    assert batched == alone


def test_cli_serve_help_and_run_dir_resolution(tmp_path):
    from typer.testing import CliRunner

    from r1.cli.main import app
    from r1.data.prompts import PromptFormat
    from r1.models import build_tiny
    from r1.serve.launch import resolve_model

    res = CliRunner().invoke(app, ["serve", "--help"])
    assert res.exit_code == 0 and "--api-key" in res.output and "--max-batch" in res.output
    spec, prompt_for, name = resolve_model("tiny")
    model, tok = build_tiny()
    assert (spec, name) == ("tiny", "tiny") and prompt_for(tok) == PromptFormat.as_sent(tok)
    # a training run directory is served with the run's own prompt
    from r1.config import dump_config, load_config
    from r1.presets import preset_path

    run = tmp_path / "myrun"
    (run / "model").mkdir(parents=True)
    cfg = load_config(preset_path("tiny"))
    dump_config(cfg, run / "config.yaml")
    model.save_pretrained(run / "model")
    spec, prompt_for, name = resolve_model(str(run))
    style = prompt_for(tok)
    assert spec == str(run / "model") and name == "myrun"
    assert (style.style, style.template, style.force_think) == (cfg.prompt.style, cfg.prompt.template,
                                                                 cfg.prompt.force_think)
    assert style.stop == tuple(cfg.rollout.stop) == ("</answer>",)


def test_vllm_engine_imports_without_vllm_and_says_how_to_install():
    import importlib.util

    import r1.serve.vllm_engine as v  # importing never needs vLLM

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="pip install"):
        v.VLLMServeEngine("tiny", model_name="x")


@pytest.mark.gpu
def test_vllm_engine_serves_through_the_same_app(answering_model):
    """On a GPU with vLLM: the same API answers through `r1 serve --engine vllm`."""
    pytest.importorskip("vllm")
    import openai

    from r1.serve.app import ServeSettings, create_app
    from r1.serve.launch import BackgroundServer
    from r1.serve.vllm_engine import VLLMServeEngine

    engine = VLLMServeEngine(answering_model, model_name="tiny-answers", gpu_memory_utilization=0.3)
    with BackgroundServer(create_app(engine, ServeSettings(model_name="tiny-answers"))) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        a, b = QUESTIONS[1]
        r = c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                      temperature=0, max_tokens=64)
        assert r.choices[0].message.reasoning_content == reasoning_of(a, b)
        assert r.choices[0].message.content == content_of(a, b)


def test_non_stream_disconnect_frees_the_row_and_dead_engine_is_503(answering_model):
    import httpx
    import openai

    with make_server(answering_model) as srv:
        _slow(srv.engine, 0.02)  # 256 tokens would take ~5 s
        body = {"messages": [{"role": "user", "content": "Talk."}], "max_tokens": 256, "temperature": 1.0,
                "ignore_eos": True}
        with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.5 s and closes the connection
            httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 5
        while srv.engine.stats()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.engine.stats()["running"] == 0 and srv.engine.stats()["tokens"] < 200
        srv.engine.shutdown()  # the engine is gone: requests get 503, /health says so
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 503
        assert httpx.get(srv.url + "/health").status_code == 503

"""Fuzzing `r1 serve` over real HTTP: thousands of generated requests, from the server's own
OpenAPI document (schemathesis: valid and invalid bodies for every operation) and from a
hand-made strategy of hostile JSON (huge and negative integers, odd and broken Unicode,
deep nesting, wrong types in the right fields). After every request: no 5xx, every error
body OpenAI-shaped, every success valid against the documented response model; after all
of them: /health is 200 and a normal question is still answered correctly.

Deterministic by default (derandomized, the same examples every run, so CI cannot flake);
R1_FUZZ_RANDOM=1 explores new examples, R1_FUZZ_SCALE=4 runs four times as many."""

from __future__ import annotations

import json
import os
import time

import pytest

from serve_support import QUESTIONS, content_of, make_server, question

hypothesis = pytest.importorskip("hypothesis")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

API_KEY = "sk-fuzz"
SCALE = float(os.environ.get("R1_FUZZ_SCALE", "1"))
SETTINGS = dict(deadline=None, database=None, derandomize=not os.environ.get("R1_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), print_blob=True)
COUNTS = {"requests": 0}


@pytest.fixture(scope="module")
def fuzz_server(answering_model):
    model = answering_model
    # small budgets (4 tokens unless asked, at most 48), so that thousands of requests stay quick
    with make_server(str(model), api_key=API_KEY, max_tokens_cap=48, default_max_tokens=4, max_queue=64,
                     request_timeout=30) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(fuzz_server):
    import httpx

    with httpx.Client(base_url=fuzz_server.url, timeout=60) as c:
        yield c


def check_response(r, operation: str) -> None:
    """The properties every answer must have, whatever was sent."""
    from r1.serve import responses as R

    COUNTS["requests"] += 1
    assert r.status_code < 500, (r.status_code, r.text[:500])
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        R.ErrorResponse.model_validate(body)
        return
    if ctype.startswith("text/event-stream"):
        lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert lines and lines[-1] == "[DONE]", r.text[-300:]
        chunk_model = R.ChatCompletionChunk if operation == "POST /v1/chat/completions" else R.Completion
        for line in lines[:-1]:
            obj = json.loads(line)
            if "error" in obj:  # a stream may end with an error event (timeout): OpenAI-shaped too
                R.ErrorResponse.model_validate(obj)
            else:
                chunk_model.model_validate(obj)
        return
    models = {"POST /v1/chat/completions": R.ChatCompletion, "POST /v1/completions": R.Completion,
              "GET /v1/models": R.ModelList, "GET /health": R.Health}
    models[operation].model_validate(r.json())


def assert_still_serving(srv) -> None:
    import httpx
    import openai

    assert httpx.get(srv.url + "/health").status_code == 200
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
    a, b = QUESTIONS[6]
    r = c.chat.completions.create(model="tiny-answers", messages=[{"role": "user", "content": question(a, b)}],
                                  temperature=0, max_tokens=48)
    assert r.choices[0].message.reasoning_content == f"{a} + {b} = {a + b}"
    assert r.choices[0].message.content == content_of(a, b)


OPERATIONS = [("/v1/chat/completions", "POST", 600), ("/v1/completions", "POST", 350),
              ("/v1/models", "GET", 40), ("/health", "GET", 20)]


@pytest.mark.slow
def test_schema_driven_fuzz(fuzz_server, http):
    """schemathesis: valid and invalid requests for every operation of the OpenAPI document."""
    import httpx
    from schemathesis import GenerationMode

    doc = http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    started, before = time.monotonic(), COUNTS["requests"]
    for path, method, count in OPERATIONS:
        op = schema[path][method]
        strategy = st.one_of(op.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             op.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @given(case=strategy, good_key=st.booleans())
        @settings(max_examples=int(count * SCALE), **SETTINGS)
        def run(case, good_key):
            kwargs = case.as_transport_kwargs(base_url=fuzz_server.url)
            headers = dict(kwargs.get("headers") or {})
            if good_key or "Authorization" not in headers:
                headers["Authorization"] = f"Bearer {API_KEY}"
            try:
                r = http.request(method, path, headers=headers, params=kwargs.get("params"),
                                 content=_content(kwargs))
            except httpx.LocalProtocolError:  # a header value no HTTP client can send ("Bearer ")
                hypothesis.assume(False)
            check_response(r, f"{method} {path}")

        t0, n0 = time.monotonic(), COUNTS["requests"]
        run()
        print(f"{method} {path}: {COUNTS['requests'] - n0} requests in {time.monotonic() - t0:.1f} s")
    print(f"schema fuzz: {COUNTS['requests'] - before} requests in {time.monotonic() - started:.1f} s")
    assert COUNTS["requests"] - before >= 900 * min(SCALE, 1)
    assert_still_serving(fuzz_server)


def _content(kwargs: dict) -> bytes | None:
    if kwargs.get("json") is not None:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content")
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return data


# -- hostile JSON, by hand ---------------------------------------------------------------------

_ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.sampled_from(["\x00", "\u202e", "\ufeff", "\U0001f600" * 5, "<think>", "</think>", "<|im_end|>", "</s>",
                     "\\u0000", "a" * 5000, "\ud800 hi", "%s%n", "{{question}}", "\r\n\r\n"]))
_ODD_INT = st.one_of(st.integers(-10, 40), st.sampled_from([2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
                                                            -(2**63) - 1, 10**40, -1, 0]))
_ODD_NUMBER = st.one_of(_ODD_INT, st.floats(allow_nan=False, allow_infinity=False, width=64),
                        st.sampled_from([1e308, -0.0, 5e-324, 0.5, 2.0000001]))
_SCALAR = st.one_of(st.none(), st.booleans(), _ODD_NUMBER, _ODD_TEXT)
_JSON = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(_ODD_TEXT, inner, max_size=4)), max_leaves=12)
_ROLE = st.sampled_from(["user", "system", "assistant", "tool", "developer", "function"])
_NAME = st.one_of(st.sampled_from(["calculator", "f", "get_weather"]), _ODD_TEXT)
_CALL = st.fixed_dictionaries({"id": _ODD_TEXT, "type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": _NAME, "arguments": st.one_of(st.just('{"expression": "1 + 2"}'), _ODD_TEXT)})})
_MESSAGE = st.fixed_dictionaries(
    {"role": _ROLE, "content": st.one_of(_ODD_TEXT, st.none(), st.lists(st.fixed_dictionaries(
        {"type": st.just("text"), "text": _ODD_TEXT}), min_size=1, max_size=2))},
    optional={"name": st.text(max_size=8), "tool_call_id": st.text(max_size=8),
              "tool_calls": st.lists(_CALL, max_size=2)})
_TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": _NAME}, optional={"description": _ODD_TEXT, "parameters": st.one_of(_JSON, st.just(
        {"type": "object", "properties": {"expression": {"type": "string"}}})), "strict": st.booleans()})})
_TOOL_CHOICE = st.one_of(st.sampled_from(["none", "auto", "required"]), st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": _NAME})}))
# every field with a valid value (most requests are almost right, so they get deep into the server) ...
_VALID = {"model": st.just("tiny-answers"), "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1),
          "n": st.integers(1, 3), "seed": st.integers(-(2**63), 2**63 - 3), "max_tokens": st.integers(1, 8),
          "stop": st.one_of(_ODD_TEXT.filter(bool), st.lists(_ODD_TEXT.filter(bool), max_size=4)),
          "stream": st.booleans(), "logprobs": st.booleans(), "ignore_eos": st.booleans(),
          "user": _ODD_TEXT, "tools": st.lists(_TOOL, max_size=3), "tool_choice": _TOOL_CHOICE,
          "parallel_tool_calls": st.booleans(), "raw_content": st.booleans()}
# ... and a hostile one
_HOSTILE = {"model": _JSON, "temperature": _ODD_NUMBER, "top_p": _ODD_NUMBER, "n": _ODD_INT, "seed": _ODD_INT,
            "max_tokens": _ODD_INT, "max_completion_tokens": _ODD_INT, "stop": _JSON, "stream": _JSON,
            "stream_options": _JSON, "logprobs": st.one_of(_ODD_INT, _JSON), "top_logprobs": _ODD_INT,
            "tools": _JSON, "tool_choice": _JSON, "parallel_tool_calls": _JSON, "response_format": _JSON, "echo": _JSON, "logit_bias": _JSON, "messages": _JSON,
            "prompt": _JSON}


@st.composite
def _request(draw, chat: bool) -> dict:
    if chat:
        body = {"messages": draw(st.lists(_MESSAGE, min_size=1, max_size=3))}
    else:
        body = {"prompt": draw(st.one_of(_ODD_TEXT.filter(bool), st.lists(_ODD_INT, min_size=1, max_size=6)))}
    for key in draw(st.lists(st.sampled_from(sorted(_VALID)), max_size=5, unique=True)):
        body[key] = draw(_VALID[key])
    if body.get("stream") and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())}
    for key in draw(st.lists(st.sampled_from(sorted(_HOSTILE)), max_size=2, unique=True)):
        body[key] = draw(_HOSTILE[key])
    return body


_CHAT, _COMPLETION = _request(chat=True), _request(chat=False)


def _deep(depth: int) -> str:
    return '{"messages": ' + "[" * depth + "]" * depth + "}"


def _encode(body) -> bytes:
    # surrogatepass: a lone surrogate reaches the wire as broken UTF-8, as a buggy client would send it
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


_RAW = st.one_of(
    _CHAT.map(lambda b: ("/v1/chat/completions", json.dumps(b).encode())),  # \\ud800 escapes: valid JSON
    _CHAT.map(lambda b: ("/v1/chat/completions", _encode(b))),  # raw surrogates: invalid UTF-8
    _COMPLETION.map(lambda b: ("/v1/completions", json.dumps(b).encode())),
    st.integers(60, 200_000).map(lambda d: ("/v1/chat/completions", _deep(d).encode())),
    st.binary(max_size=64).map(lambda b: ("/v1/completions", b)),
)


@pytest.mark.slow
def test_hostile_json_fuzz(fuzz_server, http):
    started, before = time.monotonic(), COUNTS["requests"]

    @given(item=_RAW)
    @settings(max_examples=int(1000 * SCALE), **SETTINGS)
    def run(item):
        path, raw = item
        r = http.post(path, content=raw, headers={"Authorization": f"Bearer {API_KEY}",
                                                  "Content-Type": "application/json"})
        check_response(r, f"POST {path}")

    run()
    print(f"hostile JSON fuzz: {COUNTS['requests'] - before} requests in {time.monotonic() - started:.1f} s")
    assert COUNTS["requests"] - before >= 1000 * min(SCALE, 1)
    assert_still_serving(fuzz_server)

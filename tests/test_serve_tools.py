"""Tool calls in `r1 serve`: a tiny model taught to call the calculator and to answer after its
result, driven by real clients (the openai SDK's tool loop, streaming and not; a pydantic-ai
Agent; LangChain's `bind_tools`), and the parsing, rendering and refusals around them."""

from __future__ import annotations

import json

import pytest

from serve_support import API_KEY, CALCULATOR, TOOL_QUESTIONS, make_server, question, tool_call_of, train_tool_tiny

MODEL = "tiny-tools"


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory):
    folder = train_tool_tiny(tmp_path_factory.mktemp("tiny-tools"))
    with make_server(str(folder), api_key=API_KEY, model_name=MODEL) as srv:
        yield srv


@pytest.fixture()
def tclient(tool_server):
    import openai

    return openai.OpenAI(base_url=tool_server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly."""
    from r1.data.tools import calculator as exact

    return exact(expression)


# -- text: calls and answer tags out of the content, however the deltas are cut ----------------

@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_calls_come_out_of_the_content_whatever_the_chunking(step):
    from r1.serve.text import ToolCallText

    text = ('Let me see. <tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'
            '<tool_call>{"name": "weather", "arguments": {}}</tool_call> and <tool_call>{"name": </tool_call>'
            ' tail <tool_c')
    parser, out, calls = ToolCallText(["calculator"]), "", []
    for i in range(0, len(text), step):
        o, c = parser.feed(text[i:i + step])
        out, calls = out + o, calls + c
    out += parser.finish()
    assert [c["function"]["name"] for c in calls] == ["calculator"] and calls[0]["index"] == 0
    assert json.loads(calls[0]["function"]["arguments"]) == {"expression": "2 + 3"}
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    # a function not offered and a call that does not parse stay content, as does a cut-off tag
    assert out == ('Let me see. <tool_call>{"name": "weather", "arguments": {}}</tool_call> and '
                   '<tool_call>{"name": </tool_call> tail <tool_c')
    one = ToolCallText(["calculator"], parallel=False)
    _, first = one.feed(text[:text.index("and")].replace("weather", "calculator"))
    assert len(first) == 1  # without parallel calls, the second call stays text


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_answer_tags_are_dropped_with_the_spaces_inside_them(step):
    from r1.serve.text import AnswerText

    for text, want in [("<answer> 19 </answer>", "19"), ("Sure. <answer>\n4 and 5\n</answer>\n", "Sure. 4 and 5"),
                       ("no tags ", "no tags"), ("a <ans b", "a <ans b"), ("<answer> 7", "7")]:
        a = AnswerText()
        assert "".join(a.feed(text[i:i + step]) for i in range(0, len(text), step)) + a.finish() == want


def test_a_conversation_that_ends_in_results_continues_the_turn_as_episodes_write_it():
    """What the server renders after a call is what training's episodes put in the context:
    the prompt, the model's call and the results, in one open turn."""
    from r1.data.prompts import PromptFormat
    from r1.data.tools import call_text, results_text
    from r1.models import build_tiny
    from r1.serve.protocol import ChatMessage
    from r1.serve.text import render_chat

    _, tok = build_tiny()
    fmt = PromptFormat(force_think=False, template="{question}")
    user = ChatMessage(role="user", content="What is 2 + 3?")
    prompt, prefill = render_chat([user], tok, fmt, [CALCULATOR])
    assert "You may call these functions" in prompt and '"name": "calculator"' in prompt  # the model is told how
    call = {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'}}
    msgs = [user, ChatMessage(role="assistant", content=None, tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="c1", content="5")]
    text, prefill = render_chat(msgs, tok, fmt, [CALCULATOR])
    assert text == prompt + call_text("calculator", {"expression": "2 + 3"}) + results_text(tok, ["5"])
    assert prefill == ""
    # the answer that followed closes the turn; a new question starts a new one
    msgs += [ChatMessage(role="assistant", content="5"), ChatMessage(role="user", content="And 4 + 4?")]
    text, prefill = render_chat(msgs, tok, fmt, [CALCULATOR])
    assert "</tool_response>\n5</s>\n<|user|>\nAnd 4 + 4?</s>\n<|assistant|>\n" in text and text.count("<|assistant|>") == 2


def test_a_template_that_knows_tools_gets_them_as_turns():
    from r1.data.prompts import PromptFormat
    from r1.models import build_tiny
    from r1.serve.protocol import ChatMessage
    from r1.serve.text import render_chat

    _, tok = build_tiny()
    tok.chat_template = ("{% if tools %}[tools:{% for t in tools %}{{ t.function.name }}{% endfor %}]{% endif %}"
                         "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% for c in m.tool_calls or [] %}"
                         "(call {{ c.function.name }} {{ c.function.arguments.expression }}){% endfor %}</s>"
                         "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    call = {"id": "c1", "function": {"name": "calculator", "arguments": '{"expression": "2 + 3"}'}}
    msgs = [ChatMessage(role="user", content="2 + 3?"), ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="c1", content="5")]
    text, prefill = render_chat(msgs, tok, PromptFormat(force_think=False, template="{question}"), [CALCULATOR])
    assert text == "[tools:calculator]<|user|>2 + 3?</s><|assistant|>(call calculator 2 + 3)</s><|tool|>5</s><|assistant|>"


# -- the round trip through real clients --------------------------------------------------------

def _answer_with_the_calculator(tclient, stream: bool, a: int, b: int):
    """The openai SDK's tool loop: ask, run the call the model makes, send the result, read the answer."""
    messages = [{"role": "user", "content": question(a, b)}]
    kw = dict(model=MODEL, tools=[CALCULATOR], temperature=0, max_tokens=200)
    if stream:
        with tclient.chat.completions.stream(messages=messages, **kw) as s:
            chunks = list(s)
            first = s.get_final_completion()
        assert any(getattr(e, "type", "") == "tool_calls.function.arguments.done" for e in chunks)
    else:
        first = tclient.chat.completions.create(messages=messages, **kw)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    assert choice.message.reasoning_content.strip() == f"{a} + {b}: calculator"
    assert stream or choice.message.content is None  # a stream's content starts as "" in the SDK
    (call,) = choice.message.tool_calls
    assert call.function.name == "calculator" and json.loads(call.function.arguments) == tool_call_of(a, b)["arguments"]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": calculator(**json.loads(call.function.arguments))})
    second = tclient.chat.completions.create(messages=messages, **kw) if not stream else None
    if stream:
        parts = list(tclient.chat.completions.create(messages=messages, stream=True, **kw))
        content = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
        finish = [p.choices[0].finish_reason for p in parts if p.choices and p.choices[0].finish_reason]
        return content, finish[-1]
    return second.choices[0].message.content, second.choices[0].finish_reason


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_sdk_tool_loop_round_trips(tclient, stream):
    for a, b in TOOL_QUESTIONS:
        content, finish = _answer_with_the_calculator(tclient, stream, a, b)
        assert content == str(a + b) and finish == "stop"  # the answer, without its <answer> tags


def test_raw_content_keeps_the_answer_tags_and_tool_choice_none_parses_nothing(tclient):
    a, b = TOOL_QUESTIONS[0]
    kw = dict(model=MODEL, tools=[CALCULATOR], temperature=0, max_tokens=200)
    r = tclient.chat.completions.create(messages=[{"role": "user", "content": question(a, b)}], tool_choice="none", **kw)
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert r.choices[0].message.content.startswith("<tool_call>")  # the model's text, as it wrote it
    call = {"id": "c", "type": "function", "function": {"name": "calculator",
                                                        "arguments": json.dumps(tool_call_of(a, b)["arguments"])}}
    msgs = [{"role": "user", "content": question(a, b)}, {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c", "content": str(a + b)}]
    r = tclient.chat.completions.create(messages=msgs, extra_body={"raw_content": True}, **kw)
    assert r.choices[0].message.content == f"<answer>{a + b}</answer>"


def test_required_and_named_choices_without_a_matching_call_answer_with_text(tclient):
    """The sampler is not constrained: where the model makes no call to what was asked for,
    the answer is its text and finish_reason is stop (documented in the serving guide)."""
    a, b = TOOL_QUESTIONS[1]
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    r = tclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question(a, b)}],
                                        tools=[CALCULATOR, weather], temperature=0, max_tokens=200,
                                        tool_choice={"type": "function", "function": {"name": "weather"}})
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert '"calculator"' in r.choices[0].message.content
    r = tclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question(a, b)}],
                                        tools=[CALCULATOR], temperature=0, max_tokens=200, tool_choice="required",
                                        parallel_tool_calls=False)
    assert r.choices[0].finish_reason == "tool_calls" and len(r.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("body, param", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [CALCULATOR, CALCULATOR]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools.0.function.parameters"),
    ({"tools": None, "tool_choice": "required"}, "tool_choice"),
    ({"parallel_tool_calls": "sometimes"}, "parallel_tool_calls"),
])
def test_bad_tool_requests_are_400s_naming_the_parameter(tool_server, body, param):
    import httpx

    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [CALCULATOR], **body}
    r = httpx.post(tool_server.url + "/v1/chat/completions", json=payload, timeout=30,
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_a_pydantic_ai_agent_calls_the_tool_and_answers(tool_server):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=tool_server.url + "/v1", api_key=API_KEY))
    agent = Agent(model, model_settings={"temperature": 0, "max_tokens": 200})
    seen = []

    @agent.tool_plain
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression exactly."""
        seen.append(expression)
        from r1.data.tools import calculator as exact

        return exact(expression)

    a, b = TOOL_QUESTIONS[2]
    result = agent.run_sync(question(a, b))
    assert seen == [f"{a} + {b}"] and result.output == str(a + b)


def test_a_langchain_chat_model_with_bound_tools_round_trips(tool_server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression exactly."""
        from r1.data.tools import calculator as exact

        return exact(expression)

    llm = ChatOpenAI(model=MODEL, base_url=tool_server.url + "/v1", api_key=API_KEY, temperature=0, max_tokens=200)
    bound = llm.bind_tools([calculator])
    a, b = TOOL_QUESTIONS[0]
    messages = [HumanMessage(question(a, b))]
    ai = bound.invoke(messages)
    (call,) = ai.tool_calls
    assert call["name"] == "calculator" and call["args"] == {"expression": f"{a} + {b}"}
    messages += [ai, ToolMessage(calculator.invoke(call["args"]), tool_call_id=call["id"])]
    assert bound.invoke(messages).content == str(a + b)

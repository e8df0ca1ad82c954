"""A model trained with tools, served by `r1 serve`, driven by three real clients.

    python benchmarks/serve_tools.py runs/zero-tools --problems 20

Starts `r1 serve --model RUN` on a free port and asks it the run's held-out sums through the
openai SDK's tool loop (non-streaming and streaming), a pydantic-ai `Agent` with a
`calculator` tool, and a LangChain chat model with `bind_tools`. Each client runs the calls
the model makes with r1's exact calculator and sends the results back. Prints, per client,
the share of problems on which the model called the calculator and the share answered
right, and writes them to RUN/serve_tools.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression exactly.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def exact(expression: str) -> str:
    from r1.data.tools import calculator

    return calculator(expression)


def openai_loop(base: str, question: str, stream: bool) -> tuple[bool, str]:
    from openai import OpenAI

    client = OpenAI(base_url=base, api_key="-", max_retries=0, timeout=120)
    kw = dict(model="served", tools=[CALCULATOR], temperature=0, max_tokens=128)
    messages = [{"role": "user", "content": question}]
    for _ in range(3):
        if stream:
            with client.chat.completions.stream(messages=messages, **kw) as s:
                for _event in s:
                    pass
                reply = s.get_final_completion()
        else:
            reply = client.chat.completions.create(messages=messages, **kw)
        msg = reply.choices[0].message
        if not msg.tool_calls:
            return False, msg.content or ""
        messages.append(msg.model_dump(exclude_none=True))
        for call in msg.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": exact(**json.loads(call.function.arguments))})
    final = client.chat.completions.create(messages=messages, **kw)
    return True, final.choices[0].message.content or ""


def pydantic_ai_loop(base: str, question: str) -> tuple[bool, str]:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    agent = Agent(OpenAIChatModel("served", provider=OpenAIProvider(base_url=base, api_key="-")),
                  model_settings={"temperature": 0, "max_tokens": 128})
    called = []

    @agent.tool_plain
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression exactly."""
        called.append(expression)
        return exact(expression)

    output = str(agent.run_sync(question).output)
    return bool(called), output


def langchain_loop(base: str, question: str) -> tuple[bool, str]:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression exactly."""
        return exact(expression)

    llm = ChatOpenAI(model="served", base_url=base, api_key="-", temperature=0, max_tokens=128).bind_tools([calculator])
    messages = [HumanMessage(question)]
    ai = llm.invoke(messages)
    if not ai.tool_calls:
        return False, str(ai.content)
    messages.append(ai)
    messages += [ToolMessage(calculator.invoke(c["args"]), tool_call_id=c["id"]) for c in ai.tool_calls]
    return True, str(llm.invoke(messages).content)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a training run folder (config.yaml + model/)")
    ap.add_argument("--problems", type=int, default=20)
    a = ap.parse_args()
    from r1.data.tasks import load_run

    rc, task = load_run(a.run)
    _, held = task.splits(rc.task.train_size, rc.task.heldout_size)
    held = held[: a.problems]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "r1", "serve", "--model", str(a.run), "--port", str(port),
                             "--served-model-name", "served"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        clients = {"openai": lambda q: openai_loop(base, q, False), "openai (stream)": lambda q: openai_loop(base, q, True),
                   "pydantic-ai": lambda q: pydantic_ai_loop(base, q), "langchain": lambda q: langchain_loop(base, q)}
        results = {}
        for name, ask in clients.items():
            called = right = 0
            for ex in held:
                used, answer = ask(ex.question)
                called += used
                right += bool(task.verify(answer.strip(), ex))
            results[name] = {"called": called / len(held), "correct": right / len(held), "problems": len(held)}
            print(f"{name}: called the calculator on {called}/{len(held)}, answered {right}/{len(held)} right", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    (a.run / "serve_tools.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

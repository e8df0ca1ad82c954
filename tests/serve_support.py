"""Helpers for the serving tests and the load benchmark: a tiny model that has learnt real
answers (so reasoning, content and "whose answer is this" can be checked exactly), and
a server on a free loopback port."""

from __future__ import annotations

from pathlib import Path

API_KEY = "sk-test-r1"  # the key of the shared test servers (conftest.py)
QUESTIONS = [(2, 3), (4, 1), (7, 5), (6, 8), (9, 9), (3, 4), (1, 1), (8, 2)]


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def reasoning_of(a: int, b: int) -> str:
    return f"{a} + {b} = {a + b}"


def content_of(a: int, b: int) -> str:
    return f"<answer>{a + b}</answer>"


def train_answering_tiny(out: Path, steps: int = 300) -> Path:
    """The offline tiny model, taught (in ~4 s) to answer each of QUESTIONS, asked through
    the server's own chat rendering, with "<think>\\n{a} + {b} = {c}\\n</think>\\n<answer>{c}</answer>"."""
    import torch

    from r1.models import build_tiny
    from r1.data.prompts import PromptFormat
    from r1.serve.text import render_chat
    from r1.serve.protocol import ChatMessage

    torch.manual_seed(0)
    model, tok = build_tiny()
    rows = []
    for a, b in QUESTIONS:
        text, _ = render_chat([ChatMessage(role="user", content=question(a, b))], tok, PromptFormat.as_sent())
        rows.append((text, f"{reasoning_of(a, b)}\n</think>\n{content_of(a, b)}{tok.eos_token}"))
    return _teach(model, tok, rows, steps, out)


# the tools model: it calls the calculator for each of these, then answers with the result
TOOL_QUESTIONS = [(23, 45), (61, 17), (38, 29)]
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression exactly.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def tool_call_of(a: int, b: int) -> dict:
    return {"name": "calculator", "arguments": {"expression": f"{a} + {b}"}}


def train_tool_tiny(out: Path, steps: int = 200) -> Path:
    """A tiny model folder that looks like one `r1 zero --preset tools` writes (its saved chat
    template shows a call in a one-shot example, so the server adds no instructions), taught to
    call the calculator for each of TOOL_QUESTIONS and then to answer "<answer>{c}</answer>"
    after the result, both through the server's own rendering."""
    import json

    import torch

    from r1.models import build_tiny
    from r1.data.prompts import PromptFormat
    from r1.data.tools import call_text
    from r1.serve.text import render_chat
    from r1.serve.protocol import ChatMessage

    torch.manual_seed(0)
    model, tok = build_tiny()
    example = call_text("calculator", {"expression": "1 + 1"}) + "\n<tool_response>\n2\n</tool_response>\n<answer>2</answer>"
    trained = PromptFormat(template="Use the calculator; answer inside <answer> </answer> tags.\n\n{question}",
                           examples=(("What is 1 + 1?", example),))
    tok.chat_template = trained.chat_template(tok)
    served = PromptFormat.as_sent(tok)
    rows = []
    for a, b in TOOL_QUESTIONS:
        call = tool_call_of(a, b)
        asked = [ChatMessage(role="user", content=question(a, b))]
        text, _ = render_chat(asked, tok, served, [CALCULATOR])
        rows.append((text, f"{a} + {b}: calculator\n</think>\n{call_text(**call)}{tok.eos_token}"))
        answered = asked + [
            ChatMessage(role="assistant", content=None, tool_calls=[{"id": "call_1", "type": "function", "function": {
                "name": "calculator", "arguments": json.dumps(call["arguments"])}}]),
            ChatMessage(role="tool", tool_call_id="call_1", content=str(a + b))]
        text, _ = render_chat(answered, tok, served, [CALCULATOR])
        rows.append((text, f"<answer>{a + b}</answer>{tok.eos_token}"))
    return _teach(model, tok, rows, steps, out)


def _teach(model, tok, rows: list[tuple[str, str]], steps: int, out: Path) -> Path:
    """Fit `model` to write each target after its prompt (full batch, AdamW); save it to `out`."""
    import torch

    rows = [(tok(p, add_special_tokens=False).input_ids, tok(t, add_special_tokens=False).input_ids) for p, t in rows]
    width = max(len(p) + len(t) for p, t in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        n = len(p) + len(t)
        ids[i, :n] = torch.tensor(p + t)
        labels[i, len(p):n] = torch.tensor(t)
        mask[i, :n] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc, timeout: float, log=None) -> None:
    """Until `url`/health answers 200; fails with the process's output if it dies first."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log() if log else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health in {timeout:g} s")
        time.sleep(0.2)


def make_server(model_dir: str, *, max_batch: int = 32, max_queue: int = 256, api_key: str | None = None,
                request_timeout: float = 120.0, max_tokens_cap: int = 256, model_name: str = "tiny-answers",
                precision: str = "auto", default_max_tokens: int = 64):
    """A BackgroundServer (use as a context manager) around a fresh engine."""
    from r1.serve.app import ServeSettings, create_app
    from r1.serve.launch import BackgroundServer, build_engine

    engine = build_engine(model_dir, model_name=model_name, max_batch=max_batch, max_queue=max_queue,
                          device="cpu", precision=precision)
    settings = ServeSettings(model_name=model_name, api_key=api_key, max_tokens_cap=max_tokens_cap,
                             default_max_tokens=default_max_tokens, request_timeout=request_timeout)
    return BackgroundServer(create_app(engine, settings), engine=engine)


def hook_passes(engine, hook):
    """Call `hook(kind, ids)` before each pass of the serving engine's model, where a test plays
    a slow or failing device: "prefill" (the model's forward over prompts) or "decode" (one
    token per row: the lean step where the engine has one, else the model's forward). Returns
    a function that puts the passes back."""
    forward = engine.model.forward

    def hooked_forward(*args, **kwargs):
        ids = kwargs["input_ids"]
        hook("decode" if ids.shape[1] == 1 else "prefill", ids)
        return forward(*args, **kwargs)

    engine.model.forward = hooked_forward
    lean = engine._lean
    step = lean.step if lean is not None else None
    if lean is not None:
        def hooked_step(tokens, *args):
            hook("decode", tokens[:, None])
            return step(tokens, *args)

        lean.step = hooked_step

    def restore():
        engine.model.forward = forward
        if lean is not None:
            lean.step = step

    return restore

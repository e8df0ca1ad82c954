"""Tools a model calls in the middle of its answer: their definitions and JSON schemas, the
calls in the model's text, running them, and the text that gives the results back.

A call is JSON inside `<tool_call>` tags, Hermes's and Qwen's convention:

    <tool_call>{"name": "calculator", "arguments": {"expression": "37 + 48"}}</tool_call>

Built in: `calculator` (exact arithmetic on one string argument, `expression`; no code is
run) and `python` (a program run in `r1.sandbox`, its limits and isolation unchanged). Any
Python function becomes a tool (`file.py:function`), its schema taken from its signature and
docstring. A tool that raises, hangs or is called wrongly gives an error result, never an
exception: the episode goes on and the model sees what went wrong.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from r1.errors import R1Error

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN = "<tool_response>"
CALL_RE = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.S)
MAX_RESULT_CHARS = 2000
_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
               "dict": "object"}  # by the annotation's name: a module with postponed annotations gives strings


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments (type object)
    fn: Callable[..., Any] = field(repr=False, compare=False)

    def schema(self) -> dict:
        """OpenAI's function-tool declaration (what `tools=[...]` carries)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolResult:
    name: str
    content: str
    error: bool = False


def call_text(name: str, arguments: Any) -> str:
    """A call as the model writes it: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`."""
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + CALL_CLOSE


def template_knows_tools(tokenizer) -> bool:
    """Whether the model's own chat template (the base template inside one r1 saved) renders
    `tool` turns; where it does not, results go back as `<tool_response>` blocks."""
    from r1.data.templates import base_chat_template

    return "tool" in str(base_chat_template(tokenizer) or getattr(tokenizer, "chat_template", None) or "")


MARK = "\u2063R1-CONTENT\u2063"  # a string no template writes, to find the turn's end in a rendering


def results_text(tokenizer, contents: list[str]) -> str:
    """What follows a model's turn that called tools: the end of its turn, a `tool` turn per
    result and the opening of its next turn, as the chat template renders them where it knows
    tool turns; else `<tool_response>` blocks inside the same turn."""
    if template_knows_tools(tokenizer):
        msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": MARK}]
        msgs += [{"role": "tool", "content": c} for c in contents]
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that refuses the tool role
            text = ""
        if MARK in text and all(c in text for c in contents):
            return text[text.index(MARK) + len(MARK):]
    return response_blocks(contents)


def response_blocks(contents: list[str]) -> str:
    """Results inside `<tool_response>` tags, in the model's own turn (r1's default convention)."""
    return "".join(f"\n{RESPONSE_OPEN}\n{c}\n</tool_response>" for c in contents) + "\n"


def parse_tool_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    """The well-formed calls in `text`, and one message per malformed one. `arguments` may be
    an object or a JSON string of one (as OpenAI's API writes it)."""
    calls, errors = [], []
    for body in CALL_RE.findall(text):
        try:
            obj = json.loads(body)
        except ValueError as e:
            errors.append(f"a tool call that is not JSON ({e.msg})")
            continue
        args = obj.get("arguments", {}) if isinstance(obj, dict) else None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(args, dict):
            errors.append('a tool call must be {"name": "...", "arguments": {...}}')
            continue
        calls.append(ToolCall(obj["name"], args))
    return calls, errors


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly: numbers, + - * /, parentheses.

    Args:
        expression: the expression, e.g. "37 + 48 * 2"
    """
    from r1.data.tasks.countdown import UnsafeExpression, safe_eval

    try:
        value = safe_eval(expression)
    except UnsafeExpression as e:
        raise ValueError(str(e)) from None
    return str(value.numerator) if value.denominator == 1 else f"{value} = {float(value):.10g}"


def python(code: str) -> str:
    """Run a Python program in a sandbox and return what it prints.

    Args:
        code: the program; print what you want to see
    """
    from r1.sandbox import execute

    out = execute(code, timeout_s=5.0, memory_mb=256)
    text = (out.stdout or "") + (f"\n[stderr]\n{out.stderr}" if out.stderr else "")
    if out.timed_out:
        return f"{text}\n[stopped: over {5.0:g} s]"
    return text if out.ok else f"{text}\n[exit code {out.exit_code}]"


def _arg_docs(doc: str) -> dict[str, str]:
    """`name: text` lines of a docstring's Args section."""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s*(\w+)\s*(?:\([^)]*\))?:\s*(.+)$", section, re.M)}


def tool_from_function(fn: Callable[..., Any], name: str | None = None) -> Tool:
    """A tool from a Python function: its name, its docstring's first paragraph as the
    description, and a JSON schema from its annotated parameters (str, int, float, bool, list,
    dict; those without a default are required; an Args section describes them)."""
    doc = inspect.getdoc(fn) or ""
    described = _arg_docs(doc)
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = _JSON_TYPES.get(getattr(p.annotation, "__name__", p.annotation), "string")
        props[p.name] = {"type": kind} | ({"description": described[p.name]} if p.name in described else {})
        if p.default is p.empty:
            required.append(p.name)
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip() or (name or fn.__name__)
    return Tool(name or fn.__name__, description, {"type": "object", "properties": props, "required": required,
                                                    "additionalProperties": False}, fn)


BUILTIN = {"calculator": calculator, "python": python}


def get_tool(spec: str) -> Tool:
    """A built-in tool by name, or a function given as `file.py:function` / `module:function`."""
    if spec in BUILTIN:
        return tool_from_function(BUILTIN[spec])
    if ":" not in spec:
        raise R1Error(f"unknown tool {spec!r}: built-in tools are {', '.join(BUILTIN)} "
                      "(or path/to/file.py:function for your own)")
    from r1.plugins import load_function

    return tool_from_function(load_function(spec, "tool"))


def _check_arguments(tool: Tool, args: dict) -> str | None:
    props, required = tool.parameters.get("properties", {}), tool.parameters.get("required", [])
    missing = [a for a in required if a not in args]
    unknown = [a for a in args if a not in props]
    if missing or unknown:
        return (f"{tool.name} takes {', '.join(props) or 'no arguments'}"
                + (f"; missing {', '.join(missing)}" if missing else "") + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    return None


def _call(tool: Tool, arguments: dict, timeout_s: float) -> tuple[str, bool]:
    """(text, error) of one call, run in a daemon thread of its own so that a function that
    never returns holds that thread alone, never the next calls."""
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = tool.fn(**arguments)
        except Exception as e:  # the model sees the error; the episode goes on
            box["error"] = f"error: {type(e).__name__}: {e}"

    thread = threading.Thread(target=run, name="r1-tool", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return f"error: {tool.name} did not finish within {timeout_s:g} s", True
    return (box["error"], True) if "error" in box else (str(box.get("value")), False)


def run_tool_calls(calls: list[ToolCall], tools: dict[str, Tool], timeout_s: float = 10.0) -> list[ToolResult]:
    """Each call's result, in order: the tool's output as text (cut to MAX_RESULT_CHARS), or an
    error result for an unknown tool, wrong arguments, an exception or `timeout_s` passing (a
    hung function is left to finish in its thread; the built-in python tool is killed by its
    sandbox)."""
    results = []
    for call in calls:
        tool = tools.get(call.name)
        if tool is None:
            results.append(ToolResult(call.name, f"error: unknown tool {call.name!r}; tools: {', '.join(tools)}", True))
            continue
        problem = _check_arguments(tool, call.arguments)
        if problem:
            results.append(ToolResult(call.name, f"error: {problem}", True))
            continue
        content, error = _call(tool, call.arguments, timeout_s)
        if len(content) > MAX_RESULT_CHARS:
            content = content[:MAX_RESULT_CHARS] + "… [cut]"
        results.append(ToolResult(call.name, content, error))
    return results

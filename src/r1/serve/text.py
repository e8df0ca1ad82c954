"""Text in and out of the serving engine: a chat rendered into a prompt, and token ids
turned back into text deltas (never half a character), cut at stop strings, split into
reasoning and content, with their log-probabilities in OpenAI's two formats."""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from r1.data.prompts import PromptFormat
from r1.data.answers import ANSWER_CLOSE, ANSWER_OPEN
from r1.data.reasoning import THINK_CLOSE, ReasoningStream, partial_tag_suffix
from r1.data.tools import (CALL_CLOSE, CALL_OPEN, call_text, parse_tool_calls, response_blocks,
                           template_knows_tools)
from r1.serve import protocol
from r1.serve.interface import RequestHandle, Step, TokenLogprob


def _arguments(text: str) -> Any:
    """A call's arguments as the chat template and the model's own call text want them: the
    object the JSON string holds (the string itself where it is not JSON)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _turns(messages: list[protocol.ChatMessage], as_tool_turns: bool) -> tuple[str, list[dict], Optional[str]]:
    """(system text, turns, tail). With a chat template that knows tools (`as_tool_turns`),
    earlier calls and `tool` results are turns of their own for it to render. Otherwise they
    are written into the assistant's turn as the model writes them in r1's episodes (a
    `<tool_call>` block, then `<tool_response>` blocks, then what it wrote next); a conversation
    that ends in results leaves that turn open: `tail` is its text, which the model continues.
    A conversation with only a system prompt makes it the user turn."""
    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer") and m.text())
    turns: list[dict] = []
    open_turn, results = False, []  # the assistant turn that called tools; results not yet written

    def close_results() -> None:
        if results:
            turns[-1]["content"] += response_blocks(results)
            results.clear()

    for m in messages:
        if m.role in ("tool", "function"):
            if as_tool_turns:
                turns.append({"role": "tool", "content": m.text(), **({"tool_call_id": m.tool_call_id}
                                                                       if m.tool_call_id else {})})
            elif open_turn:
                results.append(m.text())
            else:  # a result with no call before it: a user turn that says what it is
                turns.append({"role": "user", "content": m.text()})
            continue
        close_results()
        calls = [(c.function.name, _arguments(c.function.arguments)) for c in m.tool_calls or ()]
        if m.role == "assistant" and as_tool_turns:
            turns.append({"role": "assistant", "content": m.text(), **({"tool_calls": [
                {"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]} if calls else {})})
        elif m.role == "assistant":
            text = "\n".join(([m.text()] if m.text() else []) + [call_text(n, a) for n, a in calls])
            if open_turn:  # the answer after the results: the same turn goes on
                turns[-1]["content"] += text
            else:
                turns.append({"role": "assistant", "content": text})
            open_turn = bool(calls)
            continue
        elif m.role == "user":
            turns.append({"role": "user", "content": m.text()})
        open_turn = False
    tail = None
    if results:  # it ends in results: the model goes on in the same turn
        close_results()
        tail = turns.pop()["content"]
    if not any(t["role"] == "user" for t in turns):
        turns.insert(0, {"role": "user", "content": system})
        system = ""
    return system, turns, tail


def tools_instructions(tools: list[dict]) -> str:
    """How to call `tools`, for a model whose prompt does not show it (Hermes's convention)."""
    schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (f"You may call these functions:\n{schemas}\nTo call one, write "
            f'{CALL_OPEN}{{"name": "...", "arguments": {{...}}}}{CALL_CLOSE}; its result comes back inside '
            "<tool_response> tags.")


def render_chat(messages: list[protocol.ChatMessage], tokenizer: Any, style: PromptFormat,
                tools: Optional[list[dict]] = None) -> tuple[str, str]:
    """(prompt text, forced prefill): the messages as turns, rendered by the prompt format the
    model was trained with (`PromptFormat.render_turns`); earlier answers keep their content,
    not their reasoning. `tools` (OpenAI declarations) go to a chat template that knows tools;
    otherwise, where the prompt shows no `<tool_call>`, how to call them goes into the system text. A conversation that ends
    in tool results is continued in the same turn (an empty prefill: no new reasoning opens)."""
    as_turns = template_knows_tools(tokenizer)
    system, turns, tail = _turns(messages, as_turns)
    given = (tools or []) if as_turns else None  # the request's tools, not the ones the model trained with
    prompt = style.render_turns(turns, tokenizer, system, tools=given)
    if tools and not as_turns and CALL_OPEN not in prompt.text:  # a model not shown how to call: say how
        system = "\n\n".join(x for x in (system, tools_instructions(tools)) if x)
        prompt = style.render_turns(turns, tokenizer, system, tools=given)
    if tail is not None:
        return prompt.text + (THINK_CLOSE + "\n" if prompt.prefill else "") + tail, ""
    return prompt.text, prompt.prefill


class ToolCallText:
    """Content deltas in; content out, with every well-formed `<tool_call>` block that calls one
    of `names` taken out as an OpenAI tool call (id, function name, arguments as a JSON
    string). A block that does not parse, or calls a function not offered, stays content;
    with `parallel` false only the first call is a call."""

    def __init__(self, names: list[str], parallel: bool = True):
        self.names, self.parallel = set(names), parallel
        self.held = ""
        self.count = 0

    def feed(self, delta: str) -> tuple[str, list[dict]]:
        text, self.held = self.held + delta, ""
        out, calls = [], []
        while text:
            i = text.find(CALL_OPEN)
            j = text.find(CALL_CLOSE, i) if i >= 0 else -1
            if j < 0:  # no call, or one still being written: hold back what may become one
                keep = len(text) - i if i >= 0 else partial_tag_suffix(text, CALL_OPEN)
                out.append(text[: len(text) - keep])
                self.held = text[len(text) - keep:]
                break
            block = text[i : j + len(CALL_CLOSE)]
            out.append(text[:i])
            call = self._call(block)
            if call is None:
                out.append(block)
            else:
                calls.append(call)
            text = text[j + len(CALL_CLOSE):]
        return "".join(out), calls

    def _call(self, block: str) -> Optional[dict]:
        parsed, _ = parse_tool_calls(block)
        if len(parsed) != 1 or parsed[0].name not in self.names or (self.count and not self.parallel):
            return None
        self.count += 1
        return {"index": self.count - 1, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": parsed[0].name, "arguments": json.dumps(parsed[0].arguments, ensure_ascii=False)}}

    def finish(self) -> str:
        """At the end: a call left unfinished is content."""
        held, self.held = self.held, ""
        return held


class AnswerText:
    """Content deltas in, the answer out: `<answer>` and `</answer>` dropped with the spaces
    inside them, for a model trained to answer inside the tags (DeepSeek's API returns the
    answer without them). Trailing spaces are held until more text comes."""

    def __init__(self):
        self.held = ""
        self.lead = False  # just after <answer>: spaces are dropped

    def feed(self, delta: str) -> str:
        text, self.held = self.held + delta, ""
        out = []
        while (found := [k for k in (text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)) if k >= 0]):
            k = min(found)
            opening = text.startswith(ANSWER_OPEN, k)
            out.append(self._emit(text[:k], closing=not opening))
            self.lead = self.lead or opening
            text = text[k + len(ANSWER_OPEN if opening else ANSWER_CLOSE):]
        tag = max(partial_tag_suffix(text, ANSWER_OPEN), partial_tag_suffix(text, ANSWER_CLOSE))
        body = text[: len(text) - tag]
        self.held = body[len(body.rstrip()):] + text[len(text) - tag:]
        out.append(self._emit(body.rstrip(), closing=False))
        return "".join(out)

    def _emit(self, piece: str, closing: bool) -> str:
        if self.lead:
            piece = piece.lstrip()
            self.lead = not piece
        return piece.rstrip() if closing else piece

    def finish(self) -> str:
        held, self.held = self.held, ""
        return self._emit(held, closing=True)


class Detokenizer:
    """Token ids in, text deltas out, without re-decoding the whole sequence each time and
    without emitting half of a multi-byte character (the "prefix offset" method)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def feed(self, token_ids: list[int]) -> str:
        self.ids.extend(token_ids)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = decode(self.ids[self.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """At the end: whatever is still held (an incomplete character shows as U+FFFD)."""
        before = self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True)
        self.prefix = self.read = len(self.ids)
        return after[len(before):]


class StopText:
    """Cut the text at the first stop string; hold back a tail that may be one's beginning.
    A stop in `keep` stays in the text (the run's own stops); others are cut off (OpenAI)."""

    def __init__(self, stops: tuple[str, ...], keep: tuple[str, ...] = ()):
        self.stops = tuple(dict.fromkeys(stops + keep))
        self.keep = set(keep)
        self.held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if not self.stops:
            return delta
        text = self.held + delta
        found = [(i, s) for s in self.stops if (i := text.find(s)) >= 0]
        if found:
            cut, stop = min(found)
            self.stopped, self.held = True, ""
            return text[: cut + len(stop)] if stop in self.keep else text[:cut]
        keep = max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:]
        return text[: len(text) - keep]

    def finish(self) -> str:
        held, self.held = self.held, ""
        return held


def _finite(lp: float) -> float:
    return max(lp, -9999.0)  # JSON has no -Infinity; vLLM clamps the same way


class Choice:
    """One sampled answer being turned from token ids into text (and log-probs)."""

    def __init__(self, index: int, handle: RequestHandle, tokenizer: Any, stops: tuple[str, ...],
                 reasoning: Optional[bool], keep_stops: tuple[str, ...] = (),
                 tools: Optional[ToolCallText] = None, answer: Optional[AnswerText] = None):
        self.index, self.handle, self.tokenizer = index, handle, tokenizer
        self.detok = Detokenizer(tokenizer)
        self.stop = StopText(stops, keep_stops)
        self.split = ReasoningStream(reasoning=reasoning) if reasoning is not None else None
        self.tools, self.answer = tools, answer  # content: calls taken out, <answer> tags dropped
        self.calls: list[dict] = []  # every call so far; `take_calls` gives the new ones
        self._sent_calls = 0
        self.tokens = 0
        self.reasoning_tokens: Optional[int] = 0 if reasoning else None
        self.finish: Optional[str] = None
        self.error: Optional[str] = None
        self._logprobs: list[TokenLogprob] = []  # not yet sent

    def feed(self, step: Step) -> tuple[str, str]:
        """(reasoning delta, content delta); for /v1/completions everything is content."""
        self.tokens += len(step.token_ids)
        self._logprobs.extend(step.logprobs or ())
        text = self.detok.feed(step.token_ids)
        if step.finish is not None:
            text += self.detok.flush()
        text = self.stop.feed(text)
        if self.stop.stopped:
            self.handle.cancel()
            self.finish = "stop"
        elif step.finish is not None:
            text += self.stop.finish()
            self.finish, self.error = step.finish, step.error
        if self.split is None:
            return "", text
        if self.reasoning_tokens is not None and self.split.in_reasoning:
            self.reasoning_tokens += len(step.token_ids)  # the think block, its closing tag included
        r, c = self.split.feed(text)
        if self.finish is not None:
            r2, c2 = self.split.finish()
            r, c = r + r2, c + c2
        return r, self._content(c)

    def _content(self, c: str) -> str:
        if self.tools is not None:
            c, calls = self.tools.feed(c)
            self.calls += calls
            if self.finish is not None:
                c += self.tools.finish()
        if self.answer is not None:
            c = self.answer.feed(c) + (self.answer.finish() if self.finish is not None else "")
        return c

    def take_calls(self) -> list[dict]:
        """The tool calls found since the last time, for a stream's `delta.tool_calls`."""
        new, self._sent_calls = self.calls[self._sent_calls:], len(self.calls)
        return new

    @property
    def openai_finish(self) -> str:
        if self.calls and self.finish in ("stop", "length"):
            return "tool_calls"
        return {"stop": "stop", "length": "length", "timeout": "length"}.get(self.finish or "", "stop")

    def _token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def chat_logprobs(self) -> Optional[dict]:
        """The log-probs not yet sent, as a chat choice's `logprobs` ({"content": [...]});
        one entry per generated token, reasoning tokens included, in order."""
        if self.handle.request.logprobs is None:
            return None
        entries, self._logprobs = self._logprobs, []

        def one(token_id: int, lp: float) -> dict:
            s = self._token(token_id)
            return {"token": s, "logprob": _finite(lp), "bytes": list(s.encode("utf-8"))}

        return {"content": [{**one(e.token_id, e.logprob), "top_logprobs": [one(i, lp) for i, lp in e.top]}
                            for e in entries]}

    def completion_logprobs(self, offset: int) -> Optional[dict]:
        """The log-probs not yet sent in /v1/completions' format; `offset`: characters of
        text already sent before them (for `text_offset`)."""
        if self.handle.request.logprobs is None:
            return None
        entries, self._logprobs = self._logprobs, []
        tokens = [self._token(e.token_id) for e in entries]
        offsets = []
        for t in tokens:
            offsets.append(offset)
            offset += len(t)
        return {"tokens": tokens, "token_logprobs": [_finite(e.logprob) for e in entries],
                "top_logprobs": [{self._token(i): _finite(lp) for i, lp in e.top} for e in entries],
                "text_offset": offsets}

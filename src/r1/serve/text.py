"""Text in and out of the serving engine: a chat rendered into a prompt, and token ids
turned back into text deltas (never half a character), cut at stop strings, split into
reasoning and content, with their log-probabilities in OpenAI's two formats."""

from __future__ import annotations

from typing import Any, Optional

from r1.data.prompts import PromptFormat
from r1.data.reasoning import ReasoningStream
from r1.serve import protocol
from r1.serve.interface import RequestHandle, Step, TokenLogprob


def _turns(messages: list[protocol.ChatMessage]) -> tuple[str, list[dict]]:
    """(system text, user/assistant turns). Tool results become user turns and earlier tool
    calls are written into the assistant's text, so any chat template can render them; a
    conversation with only a system prompt makes it the user turn."""
    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer") and m.text())
    turns = []
    for m in messages:
        if m.role == "user":
            turns.append({"role": "user", "content": m.text()})
        elif m.role == "assistant":
            calls = "".join(f"\n[called {c.function.name}({c.function.arguments})]" for c in m.tool_calls or ())
            turns.append({"role": "assistant", "content": m.text() + calls})
        elif m.role in ("tool", "function"):
            label = m.tool_call_id or m.name
            turns.append({"role": "user", "content": f"[result of {label}]\n{m.text()}" if label else m.text()})
    if not any(t["role"] == "user" for t in turns):
        turns.insert(0, {"role": "user", "content": system})
        system = ""
    return system, turns


def render_chat(messages: list[protocol.ChatMessage], tokenizer: Any, style: PromptFormat) -> tuple[str, str]:
    """(prompt text, forced prefill): the messages as turns, rendered by the prompt format the
    model was trained with (`PromptFormat.render_turns`); earlier answers keep their content,
    not their reasoning."""
    system, turns = _turns(messages)
    prompt = style.render_turns(turns, tokenizer, system)
    return prompt.text, prompt.prefill


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
                 reasoning: Optional[bool], keep_stops: tuple[str, ...] = ()):
        self.index, self.handle, self.tokenizer = index, handle, tokenizer
        self.detok = Detokenizer(tokenizer)
        self.stop = StopText(stops, keep_stops)
        self.split = ReasoningStream(reasoning=reasoning) if reasoning is not None else None
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
        return r, c

    @property
    def openai_finish(self) -> str:
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

"""Split a completion into reasoning (the ``<think>`` part) and content (the answer).

The same rule as DeepSeek's API and vLLM's ``deepseek_r1`` reasoning parser: the prompt
forces the answer to open with ``<think>``, so everything up to ``</think>`` is reasoning
and what follows is content; a completion cut before ``</think>`` is all reasoning.
A ``<think>`` the model writes itself at the very start is dropped.

`ReasoningStream` does the same on text deltas: it holds back a tail that could be the
start of a tag split across tokens, so no delta ever carries half of ``</think>``.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_completion(text: str, *, reasoning: bool = True) -> tuple[str, str]:
    """(reasoning_content, content) of a whole completion (the forced ``<think>`` excluded)."""
    stream = ReasoningStream(reasoning=reasoning)
    r1, c1 = stream.feed(text)
    r2, c2 = stream.finish()
    return (r1 + r2).rstrip(), (c1 + c2).rstrip()


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningStream:
    """Feed text deltas in order; get (reasoning_delta, content_delta) back for each.

    Leading whitespace of the reasoning and of the content is dropped (the template puts
    newlines around the tags); everything else passes through unchanged."""

    def __init__(self, *, reasoning: bool = True):
        self.in_reasoning = reasoning
        self._start = reasoning  # may still strip a model-written "<think>" at the start
        self._held = ""
        self._lead = {True: True, False: True}  # still stripping leading whitespace of (reasoning, content)

    def feed(self, delta: str) -> tuple[str, str]:
        text = self._held + delta
        self._held = ""
        reasoning, content = "", ""
        if self.in_reasoning and self._start:
            stripped = text.lstrip()
            if THINK_OPEN.startswith(stripped) and stripped:  # could still become "<think>"
                self._held = text
                return "", ""
            if stripped.startswith(THINK_OPEN):
                text = stripped[len(THINK_OPEN):]
            if stripped:
                self._start = False
        if self.in_reasoning:
            end = text.find(THINK_CLOSE)
            if end >= 0:
                reasoning, text = text[:end], text[end + len(THINK_CLOSE):]
                self.in_reasoning = False
            else:
                keep = _partial_tag_suffix(text, THINK_CLOSE)
                reasoning, self._held, text = text[: len(text) - keep], text[len(text) - keep:], ""
        if not self.in_reasoning:
            content = text
        return self._strip(True, reasoning), self._strip(False, content)

    def finish(self) -> tuple[str, str]:
        """Flush what was held back (the text ended inside what looked like a tag)."""
        held, self._held = self._held, ""
        if self.in_reasoning:
            return self._strip(True, held), ""
        return "", self._strip(False, held)

    def _strip(self, is_reasoning: bool, text: str) -> str:
        if text and self._lead[is_reasoning]:
            text = text.lstrip()
            if text:
                self._lead[is_reasoning] = False
        return text

"""Reasoning and answer: the one place a completion is split into its ``<think>`` part
(reasoning) and what follows (content). Training rewards, the rejection filter, distillation
data, evaluation, API sampling and the server all use `split_reasoning` or `ReasoningStream`.

The rule is DeepSeek's API's and vLLM's ``deepseek_r1`` reasoning parser's: once the
thinking is open (the prompt forced ``<think>``, or the completion starts with it, or a
``</think>`` shows that it was open), everything up to ``</think>`` is reasoning and what
follows is content; a completion cut before ``</think>`` is all reasoning and its content
is empty. A ``<think>`` the model writes again at the very start is dropped. A completion
whose thinking was never open is all content.

`ReasoningStream` does the same on text deltas: it holds back a tail that could be the
start of a tag split across tokens, so no delta ever carries half of ``</think>``.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_reasoning(text: str, *, opened: bool | None = None) -> tuple[str, str]:
    """(reasoning, content) of a whole completion, each stripped.

    `opened`: True when the prompt forced ``<think>`` and `text` does not repeat it (the
    server's case); False when the thinking was not opened (all of `text` is content);
    None (default) decides from the text: open when it starts with ``<think>`` or holds a
    ``</think>``."""
    if opened is None:
        opened = text.lstrip().startswith(THINK_OPEN) or THINK_CLOSE in text
    stream = ReasoningStream(reasoning=opened)
    r1, c1 = stream.feed(text)
    r2, c2 = stream.finish()
    return (r1 + r2).strip(), (c1 + c2).strip()


def partial_tag_suffix(text: str, tag: str) -> int:
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
                keep = partial_tag_suffix(text, THINK_CLOSE)
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

"""Answers in completions: the last ``<answer>…</answer>``, the last ``\\boxed{}``, the last
number. Pure text; Math-Verify's extraction (fallback "math") is `r1.data.verify.extract`,
which starts from these."""

from __future__ import annotations

import re

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces matched; None if absent."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        # "\boxed 5" form
        m = re.match(r"\\boxed\s+([^\s$]+)", text[idx:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def last_number(text: str) -> str | None:
    """The last number in `text` with thousands separators removed; None if there is none."""
    found = _NUMBER_RE.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").rstrip(".")


def answer_span(text: str) -> str | None:
    """Content of the last closed ``<answer>...</answer>``; None if there is none."""
    found = _ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def extract_answer(text: str, *, fallback: str = "none") -> str | None:
    r"""The final answer of a completion.

    Order: the last ``<answer>…</answer>`` (a ``\boxed{}`` inside it wins); then, by
    `fallback`: ``"none"`` stops there (strict: no tags, no answer); ``"boxed"`` takes the
    last ``\boxed{}``; ``"last_number"`` takes the last ``\boxed{}`` or else the last
    number anywhere (GSM8K-style lenient extraction).
    """
    span = answer_span(text)
    if span is not None:
        inner = last_boxed(span)
        return (inner if inner is not None else span).strip()
    if fallback == "none":
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    if fallback == "boxed":
        return None
    if fallback == "last_number":
        return last_number(text)
    raise ValueError(f"unknown answer fallback {fallback!r}: use none, boxed or last_number here, "
                     "or r1.data.verify.extract for math")

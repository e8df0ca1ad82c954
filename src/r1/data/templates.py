"""The chat template a tokenizer carries, and the base model's own inside one that r1 wrote."""

from __future__ import annotations

from typing import Any

# a chat template r1 writes into a saved model holds the base model's own between these marks
BASE_OPEN, BASE_CLOSE = "{# r1:base #}", "{# r1:base-end #}"


def base_chat_template(tokenizer: Any) -> str | None:
    """The tokenizer's chat template, or the base model's inside one that r1 wrote (a trained
    model's), which r1 renders its own prompt template through, so it is not applied twice."""
    template = getattr(tokenizer, "chat_template", None)
    if template and BASE_OPEN in template and BASE_CLOSE in template:
        return template.split(BASE_OPEN, 1)[1].rsplit(BASE_CLOSE, 1)[0]
    return template

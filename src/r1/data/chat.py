"""Conversations for SFT: reading, tokenizing with assistant-only labels, packing.

Records (JSONL or a HF dataset) are ``{"messages": [{"role", "content"}, ...]}``, or
single turns ``{"problem"|"prompt"|"question", "completion"|"response"}`` (what `r1
generate` / `r1 filter` write). A conversation is rendered with the tokenizer's chat
template; each assistant turn's span is the text the template adds for it after the
generation prompt, so the labels hold exactly the tokens a model produces at inference
(the turn's content and its end-of-turn marker) and -100 everywhere else. Segments are
tokenized one by one, the prompt as the model will see it when generating.

Packing puts several conversations in one row; `position_ids` restart at 0 for each and
a block-diagonal causal mask keeps each from attending to the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from r1.data.templates import base_chat_template
from r1.errors import R1Error

IGNORE = -100
_PROMPT_KEYS = ("problem", "prompt", "question")
_ANSWER_KEYS = ("completion", "response", "answer_text")


def to_messages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise R1Error(f"{where}: 'messages' must be a non-empty list")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise R1Error(f"{where}: messages[{j}] needs string 'role' and 'content'")
        if not any(m["role"] == "assistant" for m in msgs):
            raise R1Error(f"{where}: no assistant message to learn from")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    prompt = next((row[k] for k in _PROMPT_KEYS if isinstance(row.get(k), str)), None)
    answer = next((row[k] for k in _ANSWER_KEYS if isinstance(row.get(k), str)), None)
    if prompt is None or answer is None:
        raise R1Error(f"{where}: needs 'messages', or a prompt ({'/'.join(_PROMPT_KEYS)}) "
                      f"and a completion ({'/'.join(_ANSWER_KEYS)})")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def load_conversations(path: str | None = None, dataset: str | None = None, split: str = "train",
                       limit: int | None = None) -> list[list[dict[str, str]]]:
    if path:
        from r1.runs import read_jsonl

        rows = read_jsonl(path)
        where = [f"{Path(path)}:{i + 1}" for i in range(len(rows))]
    elif dataset:
        try:
            import datasets

            rows = list(datasets.load_dataset(dataset, split=split))
        except Exception as e:
            raise R1Error(f"cannot load dataset {dataset!r}: {str(e).splitlines()[0]}") from None
        where = [f"{dataset}[{i}]" for i in range(len(rows))]
    else:
        raise R1Error("SFT data: give data.path (JSONL) or data.dataset (HF id)")
    if limit:
        rows, where = rows[:limit], where[:limit]
    return [to_messages(r, w) for r, w in zip(rows, where)]


# the chat template SFT renders with where the tokenizer has none (and writes into the model it
# saves): "Role: content" lines, each assistant turn ended by EOS so that the model learns to stop
PLAIN_CHAT_TEMPLATE = (
    "{%- for m in messages -%}{{ m['role'] | capitalize }}: {{ m['content'] }}"
    "{%- if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt %}Assistant: {% endif -%}")


def sft_chat_template(tok: Any) -> str:
    """The chat template SFT trains through: the base model's (of a model r1 trained, the one
    inside the template r1 wrote, since SFT data holds the turns as the model sees them), else
    `PLAIN_CHAT_TEMPLATE`."""
    return base_chat_template(tok) or PLAIN_CHAT_TEMPLATE


def _render(tok: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                   chat_template=sft_chat_template(tok))


def tokenize_conversation(tok: Any, messages: list[dict[str, str]], max_length: int | None = None
                          ) -> tuple[list[int], list[int]]:
    """(input_ids, labels): labels are the ids on assistant turns, IGNORE elsewhere."""
    segments: list[tuple[str, bool]] = []  # (text, is_assistant)
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tok, messages[:i], generation_prompt=True)
        full = _render(tok, messages[: i + 1], generation_prompt=False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise R1Error("the chat template does not render conversations incrementally; "
                          "cannot find the assistant turns")
        segments += [(prefix[len(done):], False), (full[len(prefix):], True)]
        done = full
    tail = _render(tok, messages, generation_prompt=False)[len(done):]
    if tail:
        segments.append((tail, False))
    ids: list[int] = []
    labels: list[int] = []
    for text, learn in segments:
        if not text:
            continue
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if learn else [IGNORE] * len(piece)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


@dataclass
class Pack:
    """Several tokenized conversations laid end to end in one row."""
    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)  # which conversation each token belongs to

    def add(self, ids: list[int], labels: list[int]) -> None:
        seg = (self.segments[-1] + 1) if self.segments else 0
        self.ids += ids
        self.labels += labels
        self.positions += list(range(len(ids)))
        self.segments += [seg] * len(ids)


def pack(examples: list[tuple[list[int], list[int]]], max_length: int) -> list[Pack]:
    """First-fit decreasing: each conversation (truncated to max_length) goes into the first
    row with room; rows hold whole conversations only."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    packs: list[Pack] = []
    for i in order:
        ids, labels = examples[i][0][:max_length], examples[i][1][:max_length]
        target = next((p for p in packs if len(p.ids) + len(ids) <= max_length), None)
        if target is None:
            target = Pack()
            packs.append(target)
        target.add(ids, labels)
    return packs


def collate(packs: list[Pack], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels, position_ids [b, L] and a bool attention mask [b, 1, L, L]
    (True = may attend): causal within a conversation, nothing across, padding isolated."""
    width = max(len(p.ids) for p in packs)
    b = len(packs)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    labels = torch.full((b, width), IGNORE, dtype=torch.long)
    positions = torch.zeros((b, width), dtype=torch.long)
    segments = torch.full((b, width), -1, dtype=torch.long)
    for i, p in enumerate(packs):
        n = len(p.ids)
        ids[i, :n] = torch.tensor(p.ids)
        labels[i, :n] = torch.tensor(p.labels)
        positions[i, :n] = torch.tensor(p.positions)
        segments[i, :n] = torch.tensor(p.segments)
    same = segments[:, :, None] == segments[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = same & causal[None] & (segments[:, :, None] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding rows attend to themselves (no NaN)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask[:, None]}

"""Prompt templates: how a problem becomes the prompt a model sees, and the strict R1 format.

Two prompt styles:
  * ``r1_zero``: the plain-text template of the R1 paper (Table 1), for base models;
  * ``chat``: the tokenizer's own chat template, for instruct models, with all the
    instructions in the user turn (R1's usage rule: no system prompt).
Either can force the assistant turn to open with ``<think>``; the forced text is part
of the prompt ids but is prepended to the completion text before any reward sees it,
so format checks judge the whole assistant answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from r1.data.templates import BASE_CLOSE, BASE_OPEN, base_chat_template

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {question}. Assistant:"
)

# The user turn of the chat style; `{answer_hint}` comes from the task.
CHAT_TEMPLATE = (
    "{question}\nThink about the problem inside <think> </think> tags, then give "
    "{answer_hint} inside <answer> </answer> tags."
)

STYLES = ("r1_zero", "chat")



def _require_chat_template(tokenizer: Any) -> None:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("the chat prompt style needs a tokenizer with a chat template "
                         "(use the r1_zero style for a model without one)")


_STRICT_FORMAT_RE = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: `text` goes to the tokenizer; `prefill` is the forced start of
    the answer (already included at the end of `text`)."""

    text: str
    prefill: str = ""


@dataclass(frozen=True)
class PromptFormat:
    """How a problem becomes a prompt, the one object every part uses: training, held-out
    and `r1 eval` evaluation, `r1 generate`, serving (a chat's last user turn) and the
    pipeline. `stop` holds the stop strings the model was trained with (kept in the text)."""

    style: str = "chat"  # "chat" (the tokenizer's chat template) or "r1_zero" (plain text)
    template: str | None = None  # the user turn, with {question} and {answer_hint}
    answer_hint: str = "the final answer"
    force_think: bool = True  # the assistant turn opens with <think>
    stop: tuple[str, ...] = ()
    examples: tuple[tuple[str, str], ...] = ()  # (question, answer) turns shown before the problem (chat)
    tools: tuple[dict, ...] = ()  # function declarations for a chat template that renders tools

    @classmethod
    def resolve(cls, spec: Any, tokenizer: Any = None, answer_hint: str = "the final answer",
                stop: Any = (), tools: Any = None) -> "PromptFormat":
        """The renderer of a prompt specification (`config.PromptConfig`: style, template,
        force_think) for a model: style auto is the chat template where the tokenizer has one,
        else r1_zero; force_think None opens with `<think>` only where the model knows the token
        (both need the tokenizer). `tools` (`config.ToolsConfig`): their declarations go to a chat
        template that renders tools (`apply_chat_template(tools=...)`)."""
        style, force = spec.style, spec.force_think
        if (style == "auto" or force is None) and tokenizer is None:
            raise ValueError("prompt style auto and force_think none are resolved against a tokenizer")
        chat_template = getattr(tokenizer, "chat_template", None) or ""
        if style == "auto":
            style = "chat" if chat_template else "r1_zero"
        if force is None:
            force = "<think>" in tokenizer.get_vocab() or "<think>" in chat_template
        examples = tuple((e.question, e.answer) for e in getattr(spec, "examples", None) or ())
        if examples and style == "r1_zero":
            raise ValueError("prompt.examples needs the chat style (the R1-Zero template holds one question)")
        declared = ()
        if tools is not None:
            from r1.data.tools import get_tool

            declared = tuple(get_tool(n).schema() for n in tools.names)
        return cls(style, spec.template, answer_hint, force, tuple(stop), examples, declared)

    @classmethod
    def of(cls, cfg: Any, answer_hint: str, tokenizer: Any = None) -> "PromptFormat":
        """A training config's prompt (`cfg.prompt`, with `cfg.rollout.stop` and its tools) for its
        task's hint."""
        return cls.resolve(cfg.prompt, tokenizer, answer_hint, cfg.rollout.stop, getattr(cfg, "tools", None))

    @classmethod
    def as_sent(cls, tokenizer: Any = None) -> "PromptFormat":
        """A model r1 did not train: messages go to its chat template as they are (the
        plain-text R1-Zero template where it has none), the answer opened with `<think>`."""
        style = "r1_zero" if tokenizer is not None and not getattr(tokenizer, "chat_template", None) else "chat"
        return cls(style=style, template="{question}")

    @property
    def prefill(self) -> str:
        """The forced start of every answer (already at the end of the rendered prompt)."""
        return "<think>\n" if self.force_think else ""

    def render(self, question: str, tokenizer: Any = None) -> Prompt:
        return self.render_turns([{"role": "user", "content": question}], tokenizer)

    def render_turns(self, turns: list[dict], tokenizer: Any = None, system: str = "",
                     tools: list[dict] | None = None) -> Prompt:
        """A conversation (user/assistant `turns`, the last user turn the question) as the
        model's prompt: the template fills the last user turn, `system` is folded into the
        first (R1's usage rule: no system prompt), then the chat template or the plain-text
        R1-Zero template (one question, no history) renders it and the prefill follows. `tools`
        (OpenAI function declarations; default: this format's own) go to a chat template that
        renders them."""
        turns = [dict(t) for t in turns]
        if not any(t["role"] == "user" for t in turns):
            raise ValueError("a prompt needs a user turn")
        if self.style == "chat":
            turns = self.example_turns() + turns
        users = [i for i, t in enumerate(turns) if t["role"] == "user"]
        if self.style == "r1_zero":
            text = R1_ZERO_TEMPLATE.format(question=turns[users[-1]]["content"].strip())
            return Prompt(text=text + (" " + self.prefill if self.prefill else ""), prefill=self.prefill)
        if self.style != "chat":
            raise ValueError(f"unknown prompt style {self.style!r}: use one of {', '.join(STYLES)}")
        _require_chat_template(tokenizer)
        turns[users[-1]]["content"] = self.user_turn(turns[users[-1]]["content"])
        if system:
            turns[users[0]]["content"] = f"{system}\n\n{turns[users[0]]['content']}"
        # the messages as given go through the model's whole template; r1's own prompt template
        # through the base model's (a trained model's saved template would apply it a second time)
        own = None if self.template == "{question}" else base_chat_template(tokenizer)
        tools = list(self.tools) if tools is None else tools
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True, chat_template=own,
                                             **({"tools": tools} if tools else {}))
        if self.prefill and text.endswith(self.prefill):  # the chat template opens the answer itself
            return Prompt(text=text, prefill=self.prefill)
        return Prompt(text=text + self.prefill, prefill=self.prefill)

    def example_turns(self) -> list[dict]:
        """The few-shot examples as the user and assistant turns that precede the problem."""
        return [{"role": role, "content": text} for q, a in self.examples
                for role, text in (("user", q), ("assistant", a))]

    def user_turn(self, question: str) -> str:
        """The user turn the model is shown for `question`: the template filled in (chat), or
        the question itself (r1_zero places it in its plain-text template)."""
        if self.style == "r1_zero":
            return question.strip()
        return user_content(question, self.template, self.answer_hint)

    def chat_template(self, tokenizer: Any = None) -> str:
        """A Jinja chat template that renders a conversation exactly as `render_turns` does with
        `tokenizer` (the prompt template on the last user turn, a system message folded into the
        first, the forced `<think>` opening in the generation prompt), so that a saved model is
        prompted by any runtime as r1 trained it. Checked on a probe conversation."""
        def raw(text: str) -> str:
            if "{% endraw %}" in text:
                raise ValueError("this prompt template cannot be written into a chat template")
            return "{% raw %}" + text + "{% endraw %}" if text else ""

        open_ = "{% if add_generation_prompt %}" + raw(self.prefill) + "{% endif %}" if self.prefill else ""
        last = ("{%- set ns = namespace(last=-1) -%}{%- for m in messages -%}{%- if m['role'] == 'user' -%}"
                "{%- set ns.last = loop.index0 -%}{%- endif -%}{%- endfor -%}")
        if self.style == "r1_zero":
            before, after = R1_ZERO_TEMPLATE.split("{question}")
            template = (last + raw(before) + "{{ messages[ns.last]['content'] | trim }}" + raw(after)
                        + (raw(" " + self.prefill) if self.prefill else ""))
        else:
            _require_chat_template(tokenizer)
            user = (self.template or CHAT_TEMPLATE).replace("{answer_hint}", self.answer_hint)
            template = (
                "{%- set tmpl %}" + raw(user) + "{% endset -%}"
                "{%- set ns = namespace(last=-1, first=-1, system='', msgs=[]) -%}"
                "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- endfor -%}"
                "{%- for s in " + json.dumps(self.example_turns()) + " -%}{%- set c = s['content'] -%}"
                "{%- if ns.system and loop.first -%}{%- set c = ns.system ~ '\\n\\n' ~ c -%}{%- endif -%}"
                "{%- set ns.msgs = ns.msgs + [{'role': s['role'], 'content': c}] -%}{%- endfor -%}"
                "{%- set shots = ns.msgs | length -%}"
                "{%- for m in messages if m['role'] != 'system' -%}{%- if m['role'] == 'user' -%}"
                "{%- set ns.last = loop.index0 -%}{%- if ns.first < 0 -%}{%- set ns.first = loop.index0 -%}"
                "{%- endif -%}{%- endif -%}{%- endfor -%}"
                "{%- for m in messages if m['role'] != 'system' -%}{%- set c = m['content'] -%}"
                "{%- if loop.index0 == ns.last -%}{%- set c = tmpl | replace('{question}', c | trim) -%}{%- endif -%}"
                "{%- if ns.system and not shots and loop.index0 == ns.first -%}"
                "{%- set c = ns.system ~ '\\n\\n' ~ c -%}{%- endif -%}"
                "{%- set ns.msgs = ns.msgs + [{'role': m['role'], 'content': c}] -%}{%- endfor -%}"
                "{%- set messages = ns.msgs %}" + BASE_OPEN + base_chat_template(tokenizer) + BASE_CLOSE + open_)
        self._check_template(template, tokenizer)
        return template

    def _check_template(self, template: str, tokenizer: Any) -> None:
        """The template renders probe conversations as `render_turns` does (ValueError if not),
        through transformers' own renderer where there is a tokenizer."""
        probes = [[{"role": "user", "content": " What is 2 + 3? "}],
                  [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 7 - 4?"}]]
        for turns in probes[: 1 if self.style == "r1_zero" else 2]:
            system = next((t["content"] for t in turns if t["role"] == "system"), "")
            want = self.render_turns([t for t in turns if t["role"] != "system"], tokenizer, system=system).text
            if tokenizer is not None:
                got = tokenizer.apply_chat_template(turns, chat_template=template, tokenize=False,
                                                    add_generation_prompt=True,
                                                    **({"tools": list(self.tools)} if self.tools else {}))
            else:
                from jinja2.sandbox import ImmutableSandboxedEnvironment

                env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
                got = env.from_string(template).render(messages=turns, add_generation_prompt=True)
            if got != want:
                raise ValueError(f"the chat template renders {got!r}, r1 renders {want!r}")

    def saved_chat_template(self, tokenizer: Any) -> str | None:
        """`chat_template` for a model folder; None (the base model's template is kept, with a
        warning) where this prompt cannot be written as one, so that saving never fails."""
        try:
            return self.chat_template(tokenizer)
        except Exception as e:  # an unusual base template: the trained weights matter more
            import logging

            logging.getLogger(__name__).warning("model/ keeps the base chat template: %s", e)
            return None

    def ids(self, question: str, tokenizer: Any) -> list[int]:
        return tokenizer(self.render(question, tokenizer).text, add_special_tokens=False)["input_ids"]


def user_content(question: str, template: str | None = None, answer_hint: str = "the final answer") -> str:
    """The user turn of the chat style: the template with {question} and {answer_hint} filled.
    str.replace, not str.format: templates may hold literal braces (\\boxed{})."""
    user = (template or CHAT_TEMPLATE).replace("{question}", question.strip())
    return user.replace("{answer_hint}", answer_hint)


def split_at_stop(text: str, stops) -> tuple[str, str | None]:
    """(text up to and including the first stop string, what follows it); (text, None) when
    no stop string occurs."""
    hits = [(i, s) for s in stops if s and (i := text.find(s)) >= 0]
    if not hits:
        return text, None
    i, stop = min(hits)
    return text[: i + len(stop)], text[i + len(stop):]


def ends_with_eos(ids, eos) -> bool:
    """True when a sample's last token id is one of `eos` (it ended by itself)."""
    return bool(ids) and ids[-1] in eos


def judge_texts(texts, completion_ids, *, stops, eos, grace: int, prefill: str = "") -> tuple[list[str], list[bool]]:
    """What rewards and evaluations judge, and which samples ran on.

    Without a stop grace (`grace` <= 0) the text is judged whole (the sampler cut it at the
    stop string). With one, the text after the first stop string is cut off (it can earn
    nothing: a tag written there must not count) and a sample that wrote anything there but
    whitespace, or did not end with EOS, ran on (strict format fails)."""
    if grace <= 0:
        return [prefill + t for t in texts], [False] * len(texts)
    judged, ran_on = [], []
    for text, ids in zip(texts, completion_ids):
        head, tail = split_at_stop(text, stops)
        judged.append(prefill + head)
        ran_on.append(tail is not None and (bool(tail.strip()) or not ends_with_eos(ids, eos)))
    return judged, ran_on


def is_strict_format(text: str) -> bool:
    """``<think>…</think>`` then ``<answer>…</answer>``, each tag exactly once, nothing around."""
    if not _STRICT_FORMAT_RE.match(text):
        return False
    return all(text.count(tag) == 1 for tag in ("<think>", "</think>", "<answer>", "</answer>"))

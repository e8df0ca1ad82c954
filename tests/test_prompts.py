import json
from pathlib import Path

import pytest

from r1.data.answers import extract_answer, last_boxed
from r1.data.prompts import PromptFormat, is_strict_format

GOLDEN = json.loads((Path(__file__).parent / "golden" / "extraction.json").read_text())


@pytest.mark.parametrize("case", GOLDEN, ids=[c["text"][:30] for c in GOLDEN])
def test_extraction_golden(case):
    assert extract_answer(case["text"], fallback=case["fallback"]) == case["expect"]


def test_last_boxed_nested():
    assert last_boxed("\\boxed{a{b{c}}d}") == "a{b{c}}d"
    assert last_boxed("nothing") is None


@pytest.mark.parametrize("text,ok", [
    ("<think>a</think><answer>b</answer>", True),
    ("<think>\na\n</think>\n<answer> b </answer>\n", True),
    ("<think>a</think> text <answer>b</answer>", False),
    ("<think>a</think><answer>b</answer><answer>c</answer>", False),
    ("<think><think>a</think><answer>b</answer>", False),
    ("a</think><answer>b</answer>", False),
    ("<think>a</think>", False),
])
def test_strict_format(text, ok):
    assert is_strict_format(text) is ok


def test_r1_zero_template_and_prefill():
    p = PromptFormat(style="r1_zero", force_think=True).render("What is 2+2?")
    assert p.text.startswith("A conversation between User and Assistant.")
    assert "User: What is 2+2?. Assistant: <think>\n" in p.text
    assert p.prefill == "<think>\n"
    p = PromptFormat(style="r1_zero", force_think=False).render("Q")
    assert p.text.endswith("Assistant:") and p.prefill == ""


def test_chat_template_puts_instructions_in_user_turn(tiny):
    _, tok = tiny
    fmt = PromptFormat(style="chat", answer_hint="the number", template="Q: {question} -> {answer_hint} \\boxed{}")
    p = fmt.render("What is {x}?", tok)
    assert "<|user|>\nQ: What is {x}? -> the number \\boxed{}</s>" in p.text
    assert p.text.endswith("<|assistant|>\n<think>\n")
    with pytest.raises(ValueError, match="chat template"):
        fmt.render("q", None)


def test_a_conversation_renders_through_the_same_template(tiny):
    _, tok = tiny
    fmt = PromptFormat(style="chat", template="Q: {question}")
    turns = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "one"},
             {"role": "user", "content": "second"}]
    p = fmt.render_turns(turns, tok, system="Be brief.")
    # the system prompt joins the first user turn; the template fills the last one only
    assert "<|user|>\nBe brief.\n\nearlier</s>" in p.text and "<|user|>\nQ: second</s>" in p.text
    assert p.text.endswith("<|assistant|>\n<think>\n") and p.prefill == "<think>\n"
    assert fmt.render_turns(turns[-1:], tok).text == fmt.render("second", tok).text
    zero = PromptFormat(style="r1_zero").render_turns(turns, tok)  # one question, no history
    assert "User: second. Assistant: <think>" in zero.text and "earlier" not in zero.text


def test_one_prompt_spec_renders_alike_in_training_evaluation_and_generation(tiny):
    """`PromptConfig` is the one prompt specification: a run trained with the default template
    (none: R1's instruction) is evaluated (`--from-run`) and sampled (`generate --from-run`)
    with exactly the prompt it was trained on, and sampling's own default sends a problem as
    it is."""
    from r1.config import build_config
    from r1.eval.runner import EvalConfig, config_settings
    from r1.pipeline.generate import GenerateConfig
    from r1.rollout.sampler import SamplingSettings

    _, tok = tiny
    rc = build_config({"task": {"name": "arithmetic"}, "prompt": {"style": "chat", "force_think": True}})
    assert rc.prompt.template is None
    _, _, name, fields = config_settings(rc, "run")
    trained = PromptFormat.of(rc, "the final number", tok)
    evaluated = EvalConfig(model="m", benchmark=name, **fields)
    generated = GenerateConfig(model="m", prompt=rc.prompt, stop=list(rc.rollout.stop))
    for cfg in (evaluated, generated):
        used = PromptFormat.resolve(cfg.prompt, tok, "the final number", cfg.stop)
        assert used == trained
        assert used.render("What is 2 + 3?", tok).text == trained.render("What is 2 + 3?", tok).text
    assert "<answer>" in trained.user_turn("What is 2 + 3?")
    as_given = PromptFormat.resolve(SamplingSettings().prompt, tok)
    assert as_given.user_turn("What is 2 + 3?") == "What is 2 + 3?"
    with pytest.raises(ValueError, match="tokenizer"):
        PromptFormat.resolve(SamplingSettings().prompt)


def test_a_prompt_that_cannot_be_a_chat_template_keeps_the_base_one(tiny):
    """Saving a model never fails on its chat template: an unwritable prompt (here one holding
    Jinja's own end-of-raw tag) leaves the base template, with a warning."""
    _, tok = tiny
    odd = PromptFormat(template="{question} {% endraw %}")
    with pytest.raises(ValueError):
        odd.chat_template(tok)
    assert odd.saved_chat_template(tok) is None
    assert PromptFormat().saved_chat_template(tok).count("{# r1:base #}") == 1

"""The one reasoning/answer splitter (`r1.data.reasoning`), and every part that reads a
completion through it: the server's stream, the language reward, the rejection filter and
distillation data from an API."""

from __future__ import annotations

import random

import pytest

from r1.data.reasoning import ReasoningStream, split_reasoning

# (completion as sampled with the forced "<think>\n" in front, reasoning, answer)
CASES = {
    "complete": ("<think>\nI add 3 and 4: 7.\n</think>\n<answer>7</answer>", "I add 3 and 4: 7.", "<answer>7</answer>"),
    "truncated": ("<think>\nlet me add 3 and 4", "let me add 3 and 4", ""),
    "empty": ("<think>\n", "", ""),
    "tagless": ("The sum is 7.", "", "The sum is 7."),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_reasoning_cases(case):
    text, reasoning, answer = CASES[case]
    assert split_reasoning(text) == (reasoning, answer)
    if case != "tagless":  # the server's view: the forced tag is in the prompt, not the text
        assert split_reasoning(text.removeprefix("<think>\n"), opened=True) == (reasoning, answer)


def test_split_reasoning_rules():
    assert split_reasoning("why</think>1") == ("why", "1")  # a lone closing tag: the thinking was open
    assert split_reasoning("<think>a</think>b", opened=True) == ("a", "b")  # the model repeated the tag
    assert split_reasoning("cut before the end", opened=True) == ("cut before the end", "")
    assert split_reasoning("<think>x</think>y", opened=False) == ("", "<think>x</think>y")
    assert split_reasoning("x < y </thin", opened=True) == ("x < y </thin", "")  # an unfinished tag stays text
    assert split_reasoning("a</think>b</think>c") == ("a", "b</think>c")  # only the first closing tag splits


def test_stream_equals_whole_text_for_any_chunking():
    rng = random.Random(0)
    texts = ["\n<think>I think 2 < 3 </th ink </think>\n<answer>5</answer>\n", "</think>only content",
             "a</think>b</think>c", "   <thi", "<think></think>", "x" * 40 + "</think>" + "y" * 40]
    for text in texts:
        for _ in range(50):
            cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 8))))
            pieces = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
            s = ReasoningStream()
            out = [s.feed(p) for p in pieces] + [s.finish()]
            if text.count("</think>") <= 1:  # a lone closing tag never leaks into a delta
                assert all("</think>" not in r and "</think>" not in c for r, c in out), (text, pieces)
            r = "".join(o[0] for o in out).strip()
            c = "".join(o[1] for o in out).strip()
            assert (r, c) == split_reasoning(text, opened=True), (text, pieces)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_server_splits_through_it(case):
    from r1.serve.text import Choice
    from r1.serve.interface import Step

    text, reasoning, answer = CASES[case]
    served = text.removeprefix("<think>\n") if case != "tagless" else text

    class Tok:  # one character per token id
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    class Handle:
        request = type("R", (), {"logprobs": None})()

        def cancel(self):
            pass

    choice = Choice(0, Handle(), Tok(), stops=(), reasoning=case != "tagless")
    ids = [ord(ch) for ch in served]
    parts = [choice.feed(Step(token_ids=ids[i:i + 3], finish=None)) for i in range(0, len(ids), 3)]
    parts.append(choice.feed(Step(token_ids=[], finish="stop")))
    got = ("".join(p[0] for p in parts).strip(), "".join(p[1] for p in parts).strip())
    assert got == (reasoning, answer)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_language_reward_judges_the_split_reasoning(case):
    from r1.rewards.language import language_consistency, language_reward

    text, reasoning, _ = CASES[case]
    mixed = text.replace("add", "addiere")  # a German word in the reasoning
    want = language_consistency(split_reasoning(mixed)[0] or mixed, "en")
    assert language_reward([mixed], target="en") == [want]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_filter_reads_answers_through_it(case):
    from r1.pipeline.filter import FilterConfig, reject

    text, _, _ = CASES[case]
    row = {"id": "p", "problem": "What is 3 + 4?", "gold": "7", "completion": text}
    result = reject([row], FilterConfig(min_language=0.0))
    kept = [r["completion"] for r in result.kept]
    # only the complete completion has both a verified answer and a well-formed think block
    assert kept == ([text] if case == "complete" else [])
    if case == "truncated":  # unfinished thinking has no answer, whatever it says
        assert result.dropped[0]["reason"] == "unverified"


@pytest.mark.parametrize("case", sorted(CASES))
def test_distillation_from_an_api_splits_through_it(case):
    from r1.rollout.openai import sample_from_content

    text, reasoning, answer = CASES[case]
    s = sample_from_content(text, None, tokens=5)  # a server that left the thinking in the content
    assert (s.reasoning, s.content) == (reasoning, answer)
    if case == "complete":
        assert sample_from_content(text.removeprefix("<think>\n"), None, tokens=5).reasoning == reasoning

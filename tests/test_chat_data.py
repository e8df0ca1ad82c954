"""SFT data: assistant-only labels token by token, and packing without cross-talk."""

import json

import pytest
import torch

from r1.data.chat import IGNORE, collate, load_conversations, pack, tokenize_conversation
from r1.errors import R1Error

CONV = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "<think>2+2=4</think> 4"},
        {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]


def test_labels_are_exactly_the_assistant_turns_token_by_token(tiny):
    _, tok = tiny
    ids, labels = tokenize_conversation(tok, CONV)
    assert len(ids) == len(labels)
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert tok.decode(ids) == text  # nothing lost or added by segment-wise tokenization
    # walk the tokens: every label is either its own id or IGNORE, and the labelled runs
    # decode to the assistant turns with their end-of-turn marker, in order
    runs, cur = [], []
    for i, (t, lab) in enumerate(zip(ids, labels)):
        assert lab in (t, IGNORE), i
        if lab != IGNORE:
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    assert runs == ["<think>2+2=4</think> 4</s>\n", "6</s>\n"]
    # and the unlabelled tokens are exactly the rest: user turns and role headers
    user_part = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])
    assert user_part == "<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n<|user|>\nAnd 3+3?</s>\n<|assistant|>\n"


def test_smollm2_template_labels_the_assistant_and_im_end(tiny):
    pytest.importorskip("gguf")
    from r1.models import load_model

    _, tok = load_model("smollm2-135m", device="cpu")
    ids, labels = tokenize_conversation(tok, CONV[:2])
    learned = tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE])
    assert learned == "<think>2+2=4</think> 4<|im_end|>\n"
    assert "You are a helpful AI assistant" in tok.decode(ids)  # the system prompt is context, not a target


def test_packing_leaks_no_attention(tiny):
    """Each conversation's logits in a pack equal its logits alone, whatever it is packed with."""
    model, tok = tiny
    a = tokenize_conversation(tok, CONV)
    b = tokenize_conversation(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}])
    c = tokenize_conversation(tok, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    model.eval()

    def alone(ex):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ex[0]])).logits[0]

    packs = pack([a, b, c], max_length=len(a[0]) + len(b[0]) + len(c[0]))
    assert len(packs) == 1 and len(set(packs[0].segments)) == 3
    batch = collate(packs + pack([b], 64), tok.pad_token_id)  # a second, padded row
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    row = packs[0]
    start = 0
    for seg in range(3):
        n = row.segments.count(seg)
        ex = next(e for e in (a, b, c) if e[0] == row.ids[start : start + n])
        assert torch.allclose(logits[0, start : start + n], alone(ex), atol=1e-4), seg
        start += n
    nb = len(b[0])
    assert torch.allclose(logits[1, :nb], alone(b), atol=1e-4)
    # the check can fail: a plain causal mask over the same pack does leak
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"][:1], position_ids=batch["position_ids"][:1]).logits
    later = row.segments.index(1)
    assert not torch.allclose(leaky[0, later : later + row.segments.count(1)],
                              logits[0, later : later + row.segments.count(1)], atol=1e-4)


def test_packing_keeps_whole_conversations_within_the_length():
    exs = [([1] * n, [1] * n) for n in (5, 3, 4, 2, 6)]
    packs = pack(exs, max_length=8)
    assert all(len(p.ids) <= 8 for p in packs)
    # first-fit decreasing: 6 | 5 | 4, then 3 joins the 5 and 2 joins the 6
    assert sorted(len(p.ids) for p in packs) == [4, 8, 8]
    total = sorted(n for p in packs for n in [p.segments.count(s) for s in set(p.segments)])
    assert total == [2, 3, 4, 5, 6]


def test_conversation_records_and_errors(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"messages": CONV}) + "\n" + json.dumps({"problem": "1+1?", "completion": "2"}) + "\n")
    convs = load_conversations(str(p))
    assert convs[0] == CONV and convs[1] == [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    with pytest.raises(R1Error, match="c.jsonl:1: no assistant message"):
        load_conversations(str(p))
    p.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(R1Error, match="c.jsonl:1: needs 'messages'"):
        load_conversations(str(p))

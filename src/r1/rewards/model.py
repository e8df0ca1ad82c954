"""A learned reward model for the general-purpose RL stage: a transformers
sequence-classification model (a local folder or hub id) scores (prompt, completion).

    rewards: {reward_model: 1.0}
    reward_params: {reward_model: {path: ./my-rm, batch_size: 8}}

`path: tiny-rm` is a random tiny classifier built offline (tests, plumbing runs).

The pair is rendered with the reward model's chat template when it has one (user turn =
the problem, assistant turn = the completion), else as "prompt\\n\\ncompletion". With one
output label the score is its logit; with several, the probability of the last label.
"""

from __future__ import annotations

import functools
from typing import Any

from r1.rewards.registry import register


@functools.lru_cache(maxsize=2)
def load_reward_model(path: str, device: str = "cpu") -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from r1.errors import R1Error

    if path == "tiny-rm":
        from r1.models import build_tiny_reward_model

        model, tok = build_tiny_reward_model()
        return model.to(device), tok
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).to(device).eval()
    except (OSError, ValueError) as e:
        raise R1Error(f"reward model {path!r}: {str(e).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def render_pair(tok: Any, prompt: str, completion: str) -> str:
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], tokenize=False)
    return f"{prompt}\n\n{completion}"


def score_pairs(path: str, prompts: list[str], completions: list[str], batch_size: int = 8,
                max_length: int = 2048, device: str = "cpu") -> list[float]:
    """Reward-model scores of (prompt, completion) pairs, in batches (right padding; the
    model reads its score at each row's last real token)."""
    import torch

    model, tok = load_reward_model(path, device)
    texts = [render_pair(tok, p, c) for p, c in zip(prompts, completions)]
    out: list[float] = []
    tok.padding_side = "right"
    for s in range(0, len(texts), batch_size):
        enc = tok(texts[s : s + batch_size], return_tensors="pt", padding=True, truncation=True,
                  max_length=max_length, add_special_tokens=False).to(device)
        with torch.no_grad():
            logits = model(**enc).logits.float()
        if logits.shape[-1] == 1:
            out += logits[:, 0].tolist()
        else:
            out += logits.softmax(-1)[:, -1].tolist()
    return out


@register("reward_model")
def reward_model_reward(completions, examples, task=None, *, path, batch_size=8, max_length=2048, device="cpu",
                        only_general=False):
    """The learned reward model's score of (problem, completion). only_general: score only
    general prompts (meta "general", from the `mixture` task) and leave reasoning prompts to
    the rule rewards (None there: a constant within a group, so no advantage)."""
    idx = [i for i, ex in enumerate(examples) if not only_general or (getattr(ex, "meta", None) or {}).get("general")]
    out: list[float | None] = [None] * len(completions)
    if idx:
        scores = score_pairs(str(path), [examples[i].question for i in idx], [completions[i] for i in idx],
                             int(batch_size), int(max_length), device)
        for i, v in zip(idx, scores):
            out[i] = v
    return out

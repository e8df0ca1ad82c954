"""What the engine tests share."""

from __future__ import annotations

import torch


def same_samples_across_a_sync(first, second, model, prompts, n: int, params, scale: float):
    """`first` and `second` (engines over `model`) sample the same tokens and log-probs, then
    again after `model`'s weights are scaled and synced into both, and the sync changed the
    samples. Returns the two generations of `first` (before, after)."""
    a, b = first.generate(prompts, n, params), second.generate(prompts, n, params)
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs
    with torch.no_grad():
        for q in model.parameters():
            q.mul_(scale)
    first.sync_weights(model)
    second.sync_weights(model)
    c, d = first.generate(prompts, n, params), second.generate(prompts, n, params)
    assert c.completion_ids == d.completion_ids and c.logprobs == d.logprobs and c.completion_ids != a.completion_ids
    return a, c

"""The shared-prefix loss pass equals the plain one: same log-probs, same gradients."""

import copy

import pytest
import torch

from r1.trainers.policy import completion_logprobs, pad_batch, shared_prefix_logprobs


@pytest.mark.parametrize("lengths", [(4, 7, 1, 5, 2, 6), (1, 1, 1, 1, 1, 1)])
def test_shared_prefix_matches_full_sequences(tiny, lengths):
    """Ragged completions, and completions of one token each (no second pass at all)."""
    model, tok = tiny
    model = copy.deepcopy(model).train()
    g = 3
    prompts = [tok("What is 1 + 2?", add_special_tokens=False)["input_ids"], [5, 6, 7]]
    torch.manual_seed(0)
    completions = [torch.randint(3, 200, (n,)).tolist() for n in lengths]
    rows_p = [prompts[i // g] for i in range(len(completions))]

    ids, attn, cmask = pad_batch(rows_p, completions, tok.pad_token_id)
    full, full_ent = completion_logprobs(model, ids, attn, cmask.shape[1], 0.7, with_entropy=True)
    (full * cmask).sum().backward()
    grads_full = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    shared, shared_ent, cmask2 = shared_prefix_logprobs(model, prompts, completions, g, tok.pad_token_id, 0.7,
                                                        with_entropy=True)
    assert torch.equal(cmask, cmask2)
    assert torch.allclose(full * cmask, shared * cmask, atol=1e-5)
    assert torch.allclose(full_ent * cmask, shared_ent * cmask, atol=1e-4)
    (shared * cmask2).sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads_full[n], atol=1e-5, rtol=1e-4), n

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


def _both_ways(model, fn, monkeypatch):
    """`fn(model)` -> (logp, entropy, mask) through the fused head and through the model's own
    logits (`split_head` off), with every parameter's gradient of the masked log-prob sum."""
    import r1.trainers.policy as policy

    out = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(policy, "split_head", lambda m: None)
        model.zero_grad()
        logp, ent, mask = fn(model)
        (logp * mask).sum().backward()
        out.append((logp.detach() * mask, ent * mask, {n: p.grad.clone() for n, p in model.named_parameters()}))
    return out


@pytest.mark.parametrize("shared", [False, True])
def test_the_fused_head_gives_the_models_own_logprobs_and_gradients(tiny, shared, monkeypatch):
    """Through the decoder and `head_logprobs` (no [tokens, vocab] logits) the log-probs,
    entropies and every parameter's gradient (the tied embedding/head included) equal those
    of the model's own forward, for the plain and the shared-prefix pass."""
    from r1.trainers.policy import split_head

    model, tok = tiny
    model = copy.deepcopy(model).train()
    assert split_head(model) is not None  # the tiny model is a Llama: the fused path is taken
    g, prompts = 2, [tok("What is 1 + 2?", add_special_tokens=False)["input_ids"], [5, 6, 7]]
    torch.manual_seed(1)
    completions = [torch.randint(3, 200, (n,)).tolist() for n in (5, 2, 7, 3)]

    def run(m):
        if shared:
            return shared_prefix_logprobs(m, prompts, completions, g, tok.pad_token_id, 0.7, with_entropy=True)
        ids, attn, cmask = pad_batch([prompts[i // g] for i in range(4)], completions, tok.pad_token_id)
        return (*completion_logprobs(m, ids, attn, cmask.shape[1], 0.7, with_entropy=True), cmask)

    (a, ea, ga), (b, eb, gb) = _both_ways(model, run, monkeypatch)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ea, eb, rtol=1e-4, atol=1e-4)
    assert ga.keys() == gb.keys() and any(v.abs().sum() > 0 for v in ga.values())
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-5, msg=n)


def test_models_with_a_step_after_the_head_keep_their_own_logits(tiny):
    """A model type not known to have a plain head (Gemma's soft-capping, Granite's scaling...)
    goes through its own forward; so does a head that is not a plain Linear (LoRA on it)."""
    from r1.trainers.policy import split_head

    model, _ = tiny
    other = copy.deepcopy(model)
    other.config.model_type = "gemma2"
    assert split_head(other) is None
    adapted = copy.deepcopy(model)
    adapted.lm_head = torch.nn.Sequential(adapted.lm_head)
    assert split_head(adapted) is None

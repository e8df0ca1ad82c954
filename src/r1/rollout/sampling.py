"""The token sampler of every local engine (rollouts, evaluation, serving): temperature,
top-p and a seeded generator per row, with the log-probability of each drawn token."""

from __future__ import annotations

import torch


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row. logits [b, V] -> (tokens [b], logprobs [b]).

    The log-probability is taken under softmax(logits / T) over the full vocabulary (the
    distribution the trainer recomputes), not the top-p truncated one. T = 0 is greedy.

    Exact, but cheap on a CPU: `torch.multinomial` draws an exponential per vocabulary
    entry and a full sort for top-p sorts the whole vocabulary; inverse-CDF sampling
    (`_inverse_cdf`) needs one uniform per row, and the nucleus is found in a top-k prefix
    that is grown until it holds top_p of the mass (docs/performance.md has the timings).
    Without top-p the weights exp(x - max) serve both the draw and the log-sum-exp (one pass
    over the vocabulary fewer).

    `uniforms` [b] (in [0, 1)) replaces the draws from `generator`: the engine draws them per
    original row so that a row's tokens do not depend on which other rows share the batch."""
    if temperature > 0 and temperature != 1.0:
        scaled = logits.float() / temperature
    else:
        scaled = logits.float()
    if temperature <= 0 or top_p < 1.0:
        lse = torch.logsumexp(scaled, dim=-1, keepdim=True)
        if temperature <= 0:
            tokens = scaled.argmax(-1)
        else:
            tokens = _sample_nucleus(scaled, lse, top_p, generator, uniforms)
    else:
        peak = scaled.amax(-1, keepdim=True)
        weights = (scaled - peak).exp_()
        lse = peak + weights.sum(-1, keepdim=True).log_()
        tokens = _inverse_cdf(weights, generator, uniforms)
    return tokens, scaled.gather(-1, tokens[:, None])[:, 0] - lse[:, 0]


_BLOCK = 256  # columns per block of the two-level inverse CDF


def _inverse_cdf(probs: torch.Tensor, generator: torch.Generator | None,
                 uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One draw per row from unnormalised non-negative weights [b, n] -> indices [b].

    u · total is located first among the sums of blocks of 256 columns, then inside its
    block: two short cumulative sums instead of one over the whole vocabulary (a cumsum is a
    sequential scan). A zero-weight
    entry is never drawn (rounding between the two levels falls back to the block's last
    non-zero weight)."""
    b, n = probs.shape
    if uniforms is None:
        uniforms = torch.rand((b,), generator=generator, device=probs.device)
    if n <= 4 * _BLOCK:
        cdf = probs.cumsum(-1)
        u = uniforms[:, None].to(cdf.dtype) * cdf[:, -1:]
        # right=True: the first index whose cdf exceeds u, so a zero-weight entry is never drawn
        return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=n - 1)
    full = n // _BLOCK * _BLOCK
    sums = probs[:, :full].view(b, -1, _BLOCK).sum(-1)
    if full < n:
        sums = torch.cat([sums, probs[:, full:].sum(-1, keepdim=True)], dim=-1)
    block_cdf = sums.cumsum(-1)
    u = uniforms[:, None].to(block_cdf.dtype) * block_cdf[:, -1:]
    block = torch.searchsorted(block_cdf, u, right=True).clamp_(max=sums.shape[1] - 1)
    rest = u - torch.where(block > 0, block_cdf.gather(-1, (block - 1).clamp(min=0)), 0.0)
    columns = block * _BLOCK + torch.arange(_BLOCK, device=probs.device)
    inside = columns < n
    weights = probs.gather(-1, columns.clamp(max=n - 1)).masked_fill_(~inside, 0.0)
    within = torch.searchsorted(weights.cumsum(-1), rest, right=True)
    nonzero = weights > 0
    last = _BLOCK - 1 - nonzero.flip(-1).to(torch.int8).argmax(-1, keepdim=True)
    return (block * _BLOCK + torch.minimum(within, last))[:, 0]


def _sample_nucleus(
    scaled: torch.Tensor, lse: torch.Tensor, top_p: float, generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Top-p: keep the smallest prefix (by probability) whose mass reaches top_p (the first
    token always stays), renormalise, draw. The same set as a full sort, found in top-k."""
    vocab = scaled.shape[-1]
    k = min(64, vocab)
    while True:
        values, order = scaled.topk(k, dim=-1) if k < vocab else scaled.sort(-1, descending=True)
        probs = (values - lse).exp_()
        before = probs.cumsum(-1) - probs  # mass strictly ahead of each token
        if k == vocab or bool((before[:, -1] + probs[:, -1] >= top_p).all()):
            break
        k = min(k * 8, vocab)
    probs = probs.masked_fill_(before >= top_p, 0.0)
    return order.gather(-1, _inverse_cdf(probs, generator, uniforms)[:, None])[:, 0]

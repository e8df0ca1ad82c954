"""Policy losses and the one aggregation function that owns length normalisation.

Shapes: logp, old_logp, mask, kl: [B, T] (completion tokens, right-padded; mask 1 on
real tokens); advantages: [B]. Losses return per-token values; `agg_loss` reduces them.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a per-token loss, with separate low/high clip ranges
    (DAPO's clip-higher: a larger `clip_high` lets rare tokens grow, keeping entropy up).

    Returns (loss [B, T], clipped [B, T] bool: where the clipped branch was active)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    return loss, clipped > unclipped


def agg_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: float | None = None,
) -> torch.Tensor:
    """Reduce a [B, T] per-token loss to a scalar.

    token-mean               sum(loss) / (number of tokens in the whole batch)  (DAPO)
    seq-mean-token-mean      mean over sequences of each sequence's token mean (GRPO paper)
    seq-mean-token-sum-norm  sum(loss) / (number of sequences * max_len)       (Dr. GRPO)

    With gradient accumulation pass the whole batch's `num_tokens` / `num_seqs`, so that
    the micro-batch losses add up to exactly the full-batch loss."""
    mask = mask.to(per_token.dtype)
    if mode == "token-mean":
        denom = num_tokens if num_tokens is not None else mask.sum().clamp(min=1.0)
        return (per_token * mask).sum() / denom
    if mode == "seq-mean-token-mean":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        denom = num_seqs if num_seqs is not None else per_token.shape[0]
        return per_seq.sum() / denom
    if mode == "seq-mean-token-sum-norm":
        if max_len is None:
            max_len = per_token.shape[1]
        denom = (num_seqs if num_seqs is not None else per_token.shape[0]) * max_len
        return (per_token * mask).sum() / denom
    raise ValueError(f"unknown loss aggregation {mode!r}: use one of {', '.join(AGGREGATIONS)}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)

"""Policy losses (a name registry) and the one aggregation function that owns length
normalisation.

Shapes: logp, old_logp, mask, kl: [B, T] (completion tokens, right-padded; mask 1 on
real tokens); advantages: [B]. Losses return per-token values; `agg_loss` reduces them.

A registered policy loss is `fn(logp, old_logp, advantages, mask, params, generator)` ->
(loss [B, T], affected [B, T] bool): `affected` marks the tokens the method acted on (the
clipped branch for `clip`, the tokens whose gradient Clip-Cov detached, the tokens KL-Cov
penalised), logged as the step's `clip_frac`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r1.algorithms import name_registry

POLICY_LOSSES, register = name_registry()

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


@dataclass(frozen=True)
class PolicyLossParams:
    """The settings every registered policy loss reads (each uses its own)."""

    clip_low: float = 0.2  # PPO clip: the ratio is kept above 1 - clip_low
    clip_high: float = 0.28  # ... and below 1 + clip_high (DAPO's clip-higher when > clip_low)
    cov_ratio: float = 2e-4  # Clip-Cov / KL-Cov: the share of a batch's tokens they act on
    clip_cov_lb: float = 1.0  # Clip-Cov: only tokens whose covariance lies in (lb, ub) are candidates
    clip_cov_ub: float = 5.0
    kl_cov_coef: float = 1.0  # KL-Cov: weight of |log pi - log pi_old| on the selected tokens


def token_covariance(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] each token's term of Cov(log pi, A) over the batch's tokens (Cui et al. 2025,
    "The Entropy Mechanism of RL for Reasoning Language Models"): (A - mean A)(log pi - mean
    log pi), means over the masked tokens. The tokens where it is large drive the entropy down:
    confident tokens made more likely, or unlikely ones made less likely."""
    m = mask.to(logp.dtype)
    lp = logp.detach()
    adv = advantages[:, None].to(lp.dtype).expand_as(lp)
    return (adv - masked_mean(adv, m)) * (lp - masked_mean(lp, m))


@register("clip")
def clip_loss(logp, old_logp, advantages, mask, params: PolicyLossParams, generator=None):
    """PPO's clipped surrogate (GRPO, DAPO's clip-higher): `clipped_surrogate`."""
    return clipped_surrogate(logp, old_logp, advantages, params.clip_low, params.clip_high)


@register("clip_cov")
def clip_cov_loss(logp, old_logp, advantages, mask, params: PolicyLossParams, generator=None):
    """Clip-Cov (Cui et al. 2025; verl's `clip_cov`): the clipped surrogate, and on a random
    `cov_ratio` share of the tokens (at least one) whose covariance term lies in
    (clip_cov_lb, clip_cov_ub) and that the clip has not already stopped, no gradient at
    all. Keeps the few high-covariance tokens from collapsing the entropy."""
    loss, clipped = clipped_surrogate(logp, old_logp, advantages, params.clip_low, params.clip_high)
    live = mask.bool() & ~clipped
    cov = token_covariance(logp, advantages, mask)
    candidates = (live & (cov > params.clip_cov_lb) & (cov < params.clip_cov_ub)).nonzero()
    count = min(len(candidates), max(1, int(params.cov_ratio * float(mask.sum()))))
    chosen = candidates[torch.randperm(len(candidates), generator=generator, device="cpu")[:count]
                        .to(candidates.device)]
    detach = torch.zeros_like(live)
    detach[chosen[:, 0], chosen[:, 1]] = True
    return loss.masked_fill(detach, 0.0), detach


@register("kl_cov")
def kl_cov_loss(logp, old_logp, advantages, mask, params: PolicyLossParams, generator=None):
    """KL-Cov (Cui et al. 2025; verl's `kl_cov`): the unclipped surrogate -A·ratio, plus
    kl_cov_coef·|log pi - log pi_old| on the top `cov_ratio` share of the tokens (at least
    one) by covariance term. The penalty grows only as the policy moves away from pi_old
    within a step, so it acts from the second of `algorithm.mu` passes on."""
    ratio = torch.exp(logp - old_logp)
    loss = -advantages[:, None] * ratio
    valid = mask.bool()
    cov = token_covariance(logp, advantages, mask).masked_fill(~valid, float("-inf"))
    count = min(int(valid.sum()), max(1, int(params.cov_ratio * float(valid.sum()))))
    top = cov.flatten().topk(count).indices if count else cov.new_empty(0, dtype=torch.long)
    chosen = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device)
    chosen[top] = True
    chosen = chosen.view_as(cov)
    penalty = params.kl_cov_coef * (logp - old_logp).abs()
    return torch.where(chosen, loss + penalty, loss), chosen

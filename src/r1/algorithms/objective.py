"""The GRPO objective of one micro-batch, whole, as one pure function:

    loss = agg( policy_loss(logp, old_logp, A) · w_TIS  −  coef · H  +  β · KL(π ‖ π_ref) )

with the policy loss from the registry (`clip`, `clip_cov`, `kl_cov`), truncated importance
weights w_TIS = min(π_old / π_rollout, cap) when another engine sampled the rollouts, the
entropy bonus, and a registered KL estimator; `agg_loss` owns the length normalisation.
The trainer only feeds it micro-batches and steps the optimizer.

Shapes as in `losses`: logp, old_logp, rollout_logp, ref_logp, entropy, mask: [B, T];
advantages: [B].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from r1.algorithms.entropy import entropy_bonus
from r1.algorithms.kl import KL_ESTIMATORS
from r1.algorithms.losses import POLICY_LOSSES, PolicyLossParams, agg_loss, masked_mean


@dataclass(frozen=True)
class ObjectiveParams:
    """The settings of the objective (from a config's `algorithm` and `rollout` sections)."""

    policy_loss: str = "clip"
    loss: PolicyLossParams = field(default_factory=PolicyLossParams)
    loss_agg: str = "token-mean"
    beta: float = 0.0  # weight of the KL term (0: no reference model)
    kl_estimator: str = "k3"
    tis_cap: float | None = None  # None: no importance weights (the trainer's engine sampled)
    max_len: float | None = None  # seq-mean-token-sum-norm's constant length


@dataclass
class MicroBatch:
    """What the objective reads of one micro-batch of completions."""

    logp: torch.Tensor  # the policy's log-probs, with gradients
    old_logp: torch.Tensor  # π_old's (the policy before this step's first update)
    advantages: torch.Tensor
    mask: torch.Tensor  # 1 on the completion tokens that enter the loss
    entropy: torch.Tensor  # the policy's per-token entropy (with gradients when coef > 0)
    rollout_logp: torch.Tensor | None = None  # the sampling engine's (for the TIS weights)
    ref_logp: torch.Tensor | None = None  # the reference model's (β > 0)


def grpo_objective(mb: MicroBatch, params: ObjectiveParams, *, entropy_coef: float = 0.0,
                   num_tokens: float | None = None, num_seqs: float | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, metrics) of one micro-batch; `num_tokens` / `num_seqs` are the whole step's, so
    that the micro-batch losses add up to the step's loss. Metrics (detached scalars):
    `clip_frac` (the share of tokens the policy loss acted on), `entropy`, and `kl` and
    `tis_weight` where those terms are on."""
    mask = mb.mask
    per_token, affected = POLICY_LOSSES[params.policy_loss](mb.logp, mb.old_logp, mb.advantages, mask,
                                                            params.loss, generator)
    metrics = {}
    if params.tis_cap is not None:  # truncated importance sampling: the samples came from the engine
        weight = (mb.old_logp - mb.rollout_logp).exp().clamp(max=params.tis_cap) * mask
        per_token = per_token * weight
        metrics["tis_weight"] = masked_mean(weight, mask).detach()
    if entropy_coef > 0:
        per_token = per_token + entropy_bonus(mb.entropy, entropy_coef)
    if params.beta > 0:
        kl = KL_ESTIMATORS[params.kl_estimator](mb.logp, mb.ref_logp)
        per_token = per_token + params.beta * kl
        metrics["kl"] = masked_mean(kl.detach(), mask)
    loss = agg_loss(per_token, mask, params.loss_agg, num_tokens=num_tokens, num_seqs=num_seqs,
                    max_len=params.max_len)
    metrics["clip_frac"] = masked_mean(affected.float(), mask).detach()
    metrics["entropy"] = masked_mean(mb.entropy, mask).detach()
    return loss, metrics

"""Per-token KL estimators of KL(pi_theta || pi_ref) from sampled tokens (Schulman 2020).

logp, ref_logp: [B, T] log-probabilities of the sampled tokens. Returns [B, T].
"""

from __future__ import annotations

import torch

from r1.algorithms import name_registry

KL_ESTIMATORS, register = name_registry()


@register("k1")
def k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """log(pi/pi_ref): unbiased, high variance, can be negative."""
    return logp - ref_logp


@register("k2")
def k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """0.5 * log(pi/pi_ref)^2: biased, low variance, non-negative."""
    return 0.5 * (logp - ref_logp) ** 2


@register("k3")
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """pi_ref/pi - log(pi_ref/pi) - 1: unbiased, non-negative (the R1/GRPO estimator).
    The log-ratio is clamped to +-20 so that one wild token cannot overflow exp."""
    log_ratio = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0

"""Advantage estimators over groups of G samples of the same prompt.

rewards: [B] float tensor, B = P * G, groups contiguous (row i*G + j).
Returns [B] advantages, one per sequence (broadcast over its tokens by the loss).
"""

from __future__ import annotations

import torch

from r1.algorithms import name_registry

ADVANTAGES, register = name_registry()


@register("grpo")
def grpo(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(r - mean(group)) / (std(group) + eps), std with Bessel's correction (as GRPO's
    reference implementations); a group whose rewards are all equal gets 0."""
    r = rewards.view(-1, group_size).float()
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(mean)
    return ((r - mean) / (std + eps)).view(-1)


@register("dr_grpo")
def dr_grpo(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Dr. GRPO (Liu et al., 2025): r - mean(group), no division by the std, which would
    up-weight near-uniform groups (questions too easy or too hard)."""
    r = rewards.view(-1, group_size).float()
    return (r - r.mean(dim=1, keepdim=True)).view(-1)


@register("rloo")
def rloo(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE leave-one-out: r_i - mean of the other G-1 rewards."""
    r = rewards.view(-1, group_size).float()
    others = (r.sum(dim=1, keepdim=True) - r) / max(group_size - 1, 1)
    return (r - others).view(-1)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[P] bool: groups whose rewards are all equal (they carry no policy gradient)."""
    r = rewards.view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values).abs() < 1e-9

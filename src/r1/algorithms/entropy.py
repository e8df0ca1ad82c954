"""Entropy control as pure functions: the bonus term, the two controllers that hold a target
entropy (one moves the bonus's coefficient, one the sampling temperature), and the check
that says when the entropy has collapsed.

Entropy here is the policy's mean per-token entropy, in nats, of the distribution the
rollouts were sampled from (softmax(logits / T)), over the completion tokens of the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def entropy_bonus(entropy: torch.Tensor, coef: float) -> torch.Tensor:
    """[B, T] the per-token term added to the loss: -coef·H (maximising the entropy), to be
    aggregated like the policy loss. `entropy` must carry gradients for it to act."""
    return -coef * entropy


def adapt_coef(coef: float, entropy: float, target: float, delta: float, low: float, high: float) -> float:
    """The adaptive bonus (TRL's `use_adaptive_entropy` rule): one step of `delta` up when the
    entropy is at or below `target`, down when above, kept within [low, high]. A step without a
    measured entropy (NaN: nothing was trained) leaves the coefficient as it is."""
    if not math.isfinite(entropy):
        return coef
    return min(high, coef + delta) if entropy <= target else max(low, coef - delta)


def adapt_temperature(temperature: float, entropy: float, target: float, gain: float, low: float,
                      high: float) -> float:
    """The entropy-targeted sampling temperature: log T moves by gain·log(target / H), so a
    policy sharper than the target is sampled hotter and a flatter one cooler, by the ratio of
    the two (the entropy rises steeply with T, so the controller works on log scales); kept
    within [low, high]. NaN entropy: T unchanged."""
    if not math.isfinite(entropy) or target <= 0:
        return temperature
    step = gain * math.log(target / max(entropy, 1e-6))
    return min(high, max(low, temperature * math.exp(step)))


@dataclass
class EntropyControl:
    """The state a run's entropy control carries from step to step (and in its checkpoints):
    the bonus coefficient and the rollout temperature the next step uses."""

    coef: float
    temperature: float

    def state(self) -> dict:
        return {"coef": self.coef, "temperature": self.temperature}


def collapse(entropies: Sequence[float | None], fraction: float, within: int) -> tuple[int, float, float] | None:
    """(step, first, value) for the first of the first `within` steps whose entropy is below
    `fraction` of the first measured one; None if it holds (or nothing was measured). Steps
    are counted from 1; missing or NaN entropies (no row trained) are skipped."""
    first = None
    for step, h in enumerate(entropies[:within], start=1):
        if h is None or not math.isfinite(h):
            continue
        if first is None:
            first = h
        elif h < fraction * first:
            return step, first, h
    return None


COLLAPSE_REMEDIES = (
    "entropy.control=temperature with entropy.target (the rollout temperature rises to hold it)",
    "entropy.control=bonus with entropy.target, or a fixed entropy.coef",
    "algorithm.policy_loss=clip_cov (or kl_cov with algorithm.mu >= 2)",
    "a higher rollout.temperature or a lower optim.lr",
)


ACTIVE_REMEDIES = {
    "temperature": "a higher entropy.target, entropy.temperature_gain or entropy.temperature_max, or an entropy "
                   "bonus beside it (entropy.coef), since a policy can sharpen its logits as fast as T rises",
    "bonus": "a higher entropy.coef_delta (the coefficient moves that much a step) or entropy.coef_max",
}


def collapse_message(found: tuple[int, float, float], fraction: float, within: int,
                     control: str | None = None) -> str:
    """The warning's text; with an entropy control on (`control`), the settings of that control
    to raise come first, since switching it on is no longer the advice."""
    step, first, value = found
    head = (f"entropy collapse: the policy's entropy fell from {first:.3f} to {value:.3f} nats by step {step} "
            f"(below {fraction:g}× its first value within the first {within} steps); its samples then differ "
            "little, groups tie and stop teaching. ")
    if control in ACTIVE_REMEDIES:
        others = [r for r in COLLAPSE_REMEDIES if not r.startswith(f"entropy.control={control}")]
        return (head + f"entropy.control={control} is on and has not held its target yet: try "
                + ACTIVE_REMEDIES[control] + ". Other settings that address it: " + "; ".join(others) + ".")
    return head + "Settings that address it: " + "; ".join(COLLAPSE_REMEDIES) + "."

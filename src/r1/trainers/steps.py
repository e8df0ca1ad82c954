"""What one GRPO step leaves behind, apart from the update: its stage timings, the seeded
start, rollouts of several ranks or refill rounds joined, a log row per sample, and the
message when the loss is not finite."""

from __future__ import annotations

import contextlib
import random
import time

import numpy as np
import torch

from r1.data.prompts import split_at_stop
from r1.types import Generation, Rollout


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Timer:
    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def concat_rollouts(ros: list[Rollout]) -> Rollout:
    """Rollouts of the same step (ranks, refill rounds) as one, in order."""
    gen = Generation(
        completion_ids=[c for r in ros for c in r.generation.completion_ids],
        logprobs=[lp for r in ros for lp in r.generation.logprobs],
        finish_reasons=[f for r in ros for f in r.generation.finish_reasons],
        seconds=sum(r.generation.seconds for r in ros), texts=[t for r in ros for t in r.generation.texts])
    return Rollout(
        examples=[e for r in ros for e in r.examples], prompt_ids=[p for r in ros for p in r.prompt_ids],
        group_size=ros[0].group_size, generation=gen, completions=[c for r in ros for c in r.completions],
        rewards={k: [v for r in ros for v in r.rewards[k]] for k in ros[0].rewards},
        total_reward=[v for r in ros for v in r.total_reward], advantages=[v for r in ros for v in r.advantages],
        scored=[v for r in ros for v in r.scored], ran_on=[v for r in ros for v in r.ran_on])


def non_finite_loss(loss, logp, old, adv, ref_lp, cmask) -> str:
    """Which input made the loss non-finite (rewards and advantages are checked before)."""
    def bad(t) -> bool:
        return t is not None and not torch.isfinite(t[cmask.bool()] if t.dim() == 2 else t).all()

    parts = [name for name, t in (("the policy's log-probs", logp), ("pi_old's log-probs", old),
                                  ("the advantages", adv), ("the reference log-probs", ref_lp)) if bad(t)]
    return (f"the loss is {loss.item()} (not finite) because of {', '.join(parts) or 'an overflow in the loss'}; "
            "the weights were not updated, and the last checkpoint is intact")


def rollout_rows(step: int, rollout: Rollout, stops=()) -> list[dict]:
    """One log row per sample; a sample that ran on shows what it wrote after the stop string."""
    g = rollout.group_size
    return [{
        "step": step, "id": rollout.examples[i // g].id, "sample": i % g,
        "completion": rollout.completions[i], "reward": rollout.total_reward[i],
        "advantage": rollout.advantages[i], "finish": rollout.generation.finish_reasons[i],
        **({"ran_on": split_at_stop(rollout.generation.texts[i], stops)[1]}
           if rollout.ran_on and rollout.ran_on[i] else {}),
        **{f"rewards/{k}": v[i] for k, v in rollout.rewards.items()},
    } for i in range(rollout.size)]

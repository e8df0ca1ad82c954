"""What one GRPO step leaves behind, apart from the update: its stage timings, the seeded
start, rollouts of several ranks or refill rounds joined, its row of metrics, a log row per
sample, and the message when the loss is not finite."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
import random
import statistics
import time

import numpy as np
import torch

from r1.data.prompts import ends_with_eos, is_strict_format, split_at_stop
from r1.rollout.episodes import EpisodeStats, episode_metrics
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
    offsets = [sum(r.size for r in ros[:k]) for k in range(len(ros))]
    gen = Generation(
        completion_ids=[c for r in ros for c in r.generation.completion_ids],
        logprobs=[lp for r in ros for lp in r.generation.logprobs],
        finish_reasons=[f for r in ros for f in r.generation.finish_reasons],
        seconds=sum(r.generation.seconds for r in ros), texts=[t for r in ros for t in r.generation.texts],
        loss_masks=None if all(r.generation.loss_masks is None for r in ros) else
        [m for r in ros for m in (r.generation.loss_masks or [[1] * len(c) for c in r.generation.completion_ids])],
        episodes=None if all(r.generation.episodes is None for r in ros) else
        [e for r in ros for e in (r.generation.episodes or [dataclasses.asdict(EpisodeStats(turns=1))] * r.size)])
    return Rollout(
        examples=[e for r in ros for e in r.examples], prompt_ids=[p for r in ros for p in r.prompt_ids],
        group_size=ros[0].group_size, generation=gen, completions=[c for r in ros for c in r.completions],
        rewards={k: [v for r in ros for v in r.rewards[k]] for k in ros[0].rewards},
        total_reward=[v for r in ros for v in r.total_reward], advantages=[v for r in ros for v in r.advantages],
        scored=[v for r in ros for v in r.scored], ran_on=[v for r in ros for v in r.ran_on],
        keep=[v for r in ros for v in r.keep], rows=[i + off for r, off in zip(ros, offsets) for i in r.rows],
        ref={i + off: lp for r, off in zip(ros, offsets) for i, lp in r.ref.items()},
        failures=functools.reduce(operator.add, [r.failures for r in ros if r.failures is not None] or [None]),
        # the first's: rank 0's step (its update statistics are every rank's already) or round 0
        refill_rounds=ros[0].refill_rounds, update=ros[0].update, stepped=ros[0].stepped, timings=ros[0].timings,
        step=ros[0].step, temperature=ros[0].temperature, entropy_coef=ros[0].entropy_coef)


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


def step_metrics(step: int, rollout: Rollout, task, eos: set[int], lr: float, level: int | None) -> dict:
    """The step's row of metrics.jsonl from its (whole, all ranks') rollout."""
    from r1.eval.heldout import has_reflection

    gen, n, g = rollout.generation, rollout.size, rollout.group_size
    lengths = [len(c) for c in gen.completion_ids]
    row = {"step": step, "reward": statistics.fmean(rollout.total_reward),
           "reward_std": statistics.pstdev(rollout.total_reward)}
    for name, values in rollout.rewards.items():
        known = [v for v in values if v is not None]
        row[f"rewards/{name}"] = statistics.fmean(known) if known else 0.0
    # the accuracy reward already verified every completion; verify again only without it
    acc = rollout.rewards.get("accuracy") or task.score_batch(rollout.completions,
                                                              [e for e in rollout.examples for _ in range(g)])
    acc = [a or 0.0 for a in acc]
    ran_on = rollout.ran_on or [False] * n
    keep = torch.tensor(rollout.keep, dtype=torch.bool).view(-1, g)
    row.update({
        "accuracy": sum(acc) / n,
        "format_rate": sum(is_strict_format(c) and not r for c, r in zip(rollout.completions, ran_on)) / n,
        "ran_on": sum(rollout.ran_on) / n if rollout.ran_on else 0.0,
        "reflection_rate": sum(has_reflection(c) for c in rollout.completions) / n,
        "response_length_mean": statistics.fmean(lengths),
        "response_length_max": max(lengths),
        "truncated_frac": sum(f == "length" for f in gen.finish_reasons) / n,
        "eos_rate": sum(ends_with_eos(c, eos) for c in gen.completion_ids) / n,
        **({} if level is None else {"curriculum_level": level}),
        **({} if gen.episodes is None else episode_metrics(gen.episodes)),
        "zero_variance_groups": int((~keep).all(1).sum().item()),
        "unscored": sum(not s for s in rollout.scored) if rollout.scored else 0,
        **rollout.failures.metrics(),
        "lr": lr,
        **({} if rollout.temperature is None else {"temperature": rollout.temperature}),
        "entropy_coef": rollout.entropy_coef,
        **rollout.update,
    })
    for name, seconds in rollout.timings.items():
        row[f"time/{name}"] = seconds
    row["time/step"] = sum(rollout.timings.values())
    row["tokens_per_s"] = sum(lengths) / max(rollout.timings.get("generate", 1e-9), 1e-9)
    row["refill_rounds"] = rollout.refill_rounds
    row["groups_trained"] = int(keep.any(1).sum())
    return row

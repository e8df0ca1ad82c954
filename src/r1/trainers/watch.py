"""What the GRPO loop watches in its first steps, and says once in the log: a run whose groups
carry no signal (why, from what it sampled) and a policy whose entropy collapses."""

from __future__ import annotations

from pathlib import Path

import torch

from r1.algorithms.advantages import zero_variance_groups
from r1.algorithms.entropy import collapse, collapse_message
from r1.config import Config
from r1.types import Rollout


def watch_signal(flat: list[Rollout] | None, rollout: Rollout, task, cfg: Config, out: Path,
                 progress) -> list[Rollout] | None:
    """Collect the first steps' rollouts while no group has unequal rewards; after
    `train.diagnose_after` of them, say why (in the log and OUT/diagnosis.md) and stop
    watching. None: not watching."""
    if flat is None:
        return None
    if not bool(zero_variance_groups(torch.tensor(rollout.total_reward), rollout.group_size).all()):
        return None  # there is a signal
    flat.append(rollout)
    if len(flat) < cfg.train.diagnose_after:
        return flat
    from r1.trainers.diagnose import diagnose, render

    text = render(diagnose(flat, task, cfg), len(flat))
    (out / "diagnosis.md").write_text(text + "\n")
    progress.print(text)
    return None


def watch_entropy(entropies: list[float | None] | None, row: dict, cfg: Config, progress) -> list[float | None] | None:
    """Say once, in the log, when the entropy collapses within the first steps
    (`entropy.collapse_fraction`, `collapse_within`); report.md says it too, from the
    metrics. None: no longer watching."""
    ent = cfg.entropy
    if entropies is None:
        return None
    entropies.append(row.get("entropy"))
    found = collapse(entropies, ent.collapse_fraction, ent.collapse_within)
    if found:
        progress.print("WARNING " + collapse_message(found, ent.collapse_fraction, ent.collapse_within, ent.control))
        return None
    return entropies if len(entropies) < ent.collapse_within else None

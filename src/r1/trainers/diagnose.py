""""Why is my reward zero?": when the first steps of a run give no learning signal (every
group's rewards equal), say why from what was sampled, and which config keys address it.

The causes, checked in this order (several can hold at once):
- the completions are cut at `rollout.max_new_tokens` before they finish;
- the format never matches (the closest completion is shown), or matches up to `</answer>`
  but the model writes on instead of ending there;
- answers are extracted but never verified (gold/extracted pairs are shown);
- the task is too hard (no group solves anything) or too easy (every group solves all).
"""

from __future__ import annotations

import difflib
from typing import Any

from r1.data.prompts import is_strict_format
from r1.types import Rollout

TEMPLATE = "<think>\n...\n</think>\n<answer>...</answer>"


def _closest_to_format(completions: list[str]) -> str:
    tags = ("<think>", "</think>", "<answer>", "</answer>")

    def key(c: str) -> tuple[int, float]:
        return (sum(t in c for t in tags), difflib.SequenceMatcher(None, c[:400], TEMPLATE).ratio())

    return max(completions, key=key)


def _clip(text: str, n: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + " …"


def diagnose(rollouts: list[Rollout], task: Any, cfg: Any) -> list[tuple[str, str, list[str]]]:
    """[(cause, evidence, config keys that address it)] for rollouts whose groups carried no
    signal; empty when nothing stands out."""
    completions = [c for r in rollouts for c in r.completions]
    examples = [ex for r in rollouts for ex in r.examples for _ in range(r.group_size)]
    finishes = [f for r in rollouts for f in r.generation.finish_reasons]
    n = len(completions)
    if not n:
        return []
    causes = []
    cut = sum(f == "length" for f in finishes) / n
    if cut >= 0.5:
        causes.append((
            f"{cut:.0%} of the completions were cut at max_new_tokens ({cfg.rollout.max_new_tokens}) before "
            "they finished", f"a cut completion ends: `…{_clip(completions[finishes.index('length')][-120:])}`",
            ["rollout.max_new_tokens", "rollout.stop", "algorithm.mask_truncated", "prompt.template (ask for "
             "short reasoning)"]))
    ran_on = [f for r in rollouts for f in (r.ran_on or [False] * r.size)]
    texts = [t for r in rollouts for t in r.generation.texts]
    strict = sum(is_strict_format(c) and not ro for c, ro in zip(completions, ran_on))
    trailing = [texts[i] for i, (c, ro) in enumerate(zip(completions, ran_on)) if ro and is_strict_format(c)]
    if strict == 0 and trailing:
        causes.append((
            f"the format matched up to the stop string in {len(trailing)} of {n} completions, but each went on "
            f"writing after it instead of ending (EOS) within rollout.stop_grace_tokens "
            f"({cfg.rollout.stop_grace_tokens})", f"one ends: `…{_clip(trailing[0][-160:])}`",
            ["rollout.stop_grace_tokens (0: cut every sample at the stop string; the model then never "
             "learns to stop)", "rewards.tag_count (partial credit per tag)"]))
    elif strict == 0:
        causes.append((
            f"the format never matched (0 of {n} completions are `<think>…</think><answer>…</answer>`)",
            f"the closest completion:\n\n```\n{_clip(_closest_to_format(completions), 500)}\n```",
            ["rewards.tag_count (partial credit per tag)", "rewards.format", "prompt.template (show an example)",
             "prompt.force_think", "prompt.style"]))
    extracted = [(ex, task.extract(c)) for c, ex in zip(completions, examples)]
    answered = [(ex, a) for ex, a in extracted if a is not None]
    right = task.verify_batch([a for _, a in answered], [ex for ex, _ in answered]) if answered else []
    if answered and not any(right):
        pairs = "; ".join(f"gold `{ex.answer}` / extracted `{_clip(str(a), 60)}`" for ex, a in answered[:3])
        causes.append((
            f"answers were extracted from {len(answered)} of {n} completions but none was verified",
            pairs, ["task.params (easier problems)", "reward_params.accuracy", "task (its verifier)"]))
    rates = []
    for r in rollouts:
        g = r.group_size
        acc = r.rewards.get("accuracy") or task.score_batch(r.completions, [e for e in r.examples for _ in range(g)])
        rates += [sum(a or 0 for a in acc[k:k + g]) / g for k in range(0, r.size, g)]
    if rates and max(rates) == 0:
        causes.append(("the task is too hard for the model: no group solved a single problem",
                       f"pass rate per group: {', '.join(f'{x:.2f}' for x in rates[:12])}",
                       ["task.params (easier problems, a curriculum)", "rollout.group_size (more tries per "
                        "problem)", "rollout.temperature", "a cold-start SFT first (r1 sft)"]))
    elif rates and min(rates) == 1:
        causes.append(("the task is too easy: every group solved every problem",
                       f"pass rate per group: {', '.join(f'{x:.2f}' for x in rates[:12])}",
                       ["task.params (harder problems)"]))
    return causes


def render(causes: list[tuple[str, str, list[str]]], steps: int) -> str:
    lines = [f"## Why is the reward flat? (no group had unequal rewards in the first {steps} steps)", ""]
    if not causes:
        lines.append("Nothing in the samples stands out: every group scored the same with well-formed, "
                     "finished, verified answers. Check the rewards' weights and parameters.")
    for cause, evidence, keys in causes:
        lines += [f"- **{cause}**.", "", f"  {evidence}".replace("\n", "\n  "), "",
                  f"  Config keys that address it: {', '.join(f'`{k}`' for k in keys)}.", ""]
    return "\n".join(lines)

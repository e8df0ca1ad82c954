"""Verification speed: r1's `answers_match` (fast paths, worker process, cache) against
Math-Verify's `parse` + `verify` called directly, side by side in one run, on MATH-500's
gold answers:

* ``same``: each gold against itself (r1's same-string fast path);
* ``boxed``: each gold against ``The answer is $\\boxed{gold}$.`` (Math-Verify's work);
* ``perturbed``: each gold against itself with its first digit changed (a wrong answer);
* ``again``: the ``boxed`` pairs again (a GRPO group repeats answers; r1 caches verdicts,
  Math-Verify its LaTeX parses).

Both sides are warmed up first on 200 MATH train answers (libraries loaded, parsers
compiled; a fresh process pays seconds for that), so that the MATH-500 pairs are new to both.

It also lists the golds that r1 does not accept in their boxed spelling (should be none).

    python benchmarks/verify.py [--data ../shared/data/math500.jsonl] [--limit 500]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def perturb(gold: str) -> str:
    m = re.search(r"\d", gold)
    if not m:
        return gold + "+1"
    d = str((int(m.group()) + 1) % 10)
    return gold[: m.start()] + d + gold[m.end():]


def timed(fn, pairs) -> tuple[float, list[bool]]:
    t0 = time.perf_counter()
    verdicts = [fn(g, t) for g, t in pairs]
    return time.perf_counter() - t0, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "math500.jsonl"))
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args()

    from math_verify import parse, verify

    from r1.data import verify as V

    golds = [json.loads(line)["answer"] for line in Path(args.data).read_text().splitlines()[: args.limit]]
    sets = {
        "same": [(g, g) for g in golds],
        "boxed": [(g, f"The answer is $\\boxed{{{g}}}$.") for g in golds],
        "perturbed": [(g, f"The answer is $\\boxed{{{perturb(g)}}}$.") for g in golds],
    }

    def reference(gold, text):
        return bool(verify(parse(f"${gold}$"), parse(text)))

    # both sides warm (libraries loaded, parsers compiled) on other problems first: MATH train's
    # golds; the MATH-500 pairs are then new to both caches (Math-Verify's and r1's)
    warm = [json.loads(line)["answer"] for line in
            (Path(args.data).parent / "math_train.jsonl").read_text().splitlines()[:200]]
    for g in warm:
        reference(g, f"The answer is $\\boxed{{{g}}}$.")
        V.answers_match(g, f"The answer is $\\boxed{{{g}}}$.")

    rows, result = [], {}
    for name, pairs in sets.items():
        s_ref, v_ref = timed(reference, pairs)
        s_r1, v_r1 = timed(V.answers_match, pairs)
        rows.append((name, len(pairs) / s_r1, len(pairs) / s_ref, sum(v_r1), sum(v_ref)))
        result[name] = {"r1_per_s": len(pairs) / s_r1, "math_verify_per_s": len(pairs) / s_ref,
                        "r1_true": sum(v_r1), "math_verify_true": sum(v_ref)}
        if name == "boxed":  # the same pairs again, both sides' caches warm
            s_ref2, _ = timed(reference, pairs)
            s_cached, _ = timed(V.answers_match, pairs)
            rows.append(("again", len(pairs) / s_cached, len(pairs) / s_ref2, sum(v_r1), sum(v_ref)))
            result["again"] = {"r1_per_s": len(pairs) / s_cached, "math_verify_per_s": len(pairs) / s_ref2}
            missed = [g for (g, _), ok in zip(pairs, v_r1) if not ok]
    print(f"{len(golds)} MATH-500 gold answers; verifications per second")
    print(f"{'pairs':10} {'r1':>10} {'Math-Verify':>12} {'ratio':>7} {'r1 true':>8} {'MV true':>8}")
    for name, ours, ref, t_ours, t_ref in rows:
        print(f"{name:10} {ours:10.0f} {ref:12.0f} {ours / ref:6.1f}x {t_ours:8d} {t_ref:8d}")
    print(f"golds r1 does not accept in their boxed spelling: {len(missed)}", *missed[:20], sep="\n  ")

    # the accuracy reward of one GRPO batch on the math task, at its most expensive: 32
    # completions (MATH-500 reference solutions) whose answers differ from the gold (perturbed:
    # no fast path, every one goes to Math-Verify), answers new to the verdict cache
    from r1.data.tasks import get_task
    from r1.data.tasks.base import Example
    from r1.rewards import registry

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()[:32]]
    task = get_task("math", {"path": args.data})
    examples = [Example(r["id"], r["problem"], r["answer"]) for r in rows]
    completions = [f"<think>{r['solution']}</think><answer>\\boxed{{{perturb(r['answer'])}}}</answer>" for r in rows]
    t0 = time.perf_counter()
    per, _, _ = registry.score(completions, examples, task, {"accuracy": 1.0})
    reward_s = time.perf_counter() - t0
    print(f"accuracy reward on a batch of 32 MATH-500 solutions (answers new to the cache): {reward_s:.3f} s, "
          f"{sum(per['accuracy']):.0f}/32 verified (answers perturbed)")
    result["reward_batch32_s"] = reward_s
    print(f"r1 counters: {V.stats()}")
    result["missed"] = missed
    print(json.dumps(result))


if __name__ == "__main__":
    main()

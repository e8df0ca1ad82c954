"""Stage-by-stage held-out accuracy of finished `r1 pipeline` runs, with standard errors.

    r1 pipeline recipes/r1-pipeline-smollm2.yaml --out runs/pipe/s0
    r1 pipeline recipes/r1-pipeline-smollm2.yaml --out runs/pipe/s1 --set seed=1
    python benchmarks/pipeline_table.py runs/pipe/s0 runs/pipe/s1

Per run: every stage's pass@1 on the pipeline's held-out set with its standard error over
problems, and the change from one stage to another (default: the last stage against the one
before it) with the standard error of the *paired* difference: both stages answered the
same problems, so the difference per problem is what varies. Then the mean over runs.
Reads each stage's `eval/samples.jsonl`; trains and samples nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from r1.eval.metrics import mean_se


def per_problem(samples: Path) -> dict[str, float]:
    by: dict[str, list[float]] = defaultdict(list)
    for line in samples.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by[r["id"]].append(float(r["correct"]))
    return {k: statistics.fmean(v) for k, v in by.items()}


def run_row(run: Path, before: str | None, after: str | None) -> dict:
    stages = [s["name"] for s in json.loads((run / "manifest.json").read_text())["stages"]]
    acc = {name: per_problem(run / name / "eval" / "samples.jsonl") for name in stages}
    after = after or stages[-1]
    before = before or stages[stages.index(after) - 1]
    shared = sorted(set(acc[before]) & set(acc[after]))
    diff = mean_se([acc[after][k] - acc[before][k] for k in shared])
    return {"run": str(run), "stages": {n: mean_se(list(a.values())) for n, a in acc.items()},
            "before": before, "after": after, "diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="finished pipeline folders (--out of r1 pipeline)")
    ap.add_argument("--before", help="the stage to compare from (default: the one before --after)")
    ap.add_argument("--after", help="the stage to compare (default: the last)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    rows = [run_row(r, a.before, a.after) for r in a.runs]
    names = list(rows[0]["stages"])
    d = f"{rows[0]['after']} − {rows[0]['before']}"
    print("| run | " + " | ".join(names) + f" | {d} (paired) |")
    print("|---|" + "---|" * (len(names) + 1))
    for r in rows:
        cells = [f"{100 * m:.1f} ± {100 * se:.1f}" if n in r["stages"] else "–"
                 for n in names for m, se in [r["stages"].get(n, (0, 0))]]
        m, se = r["diff"]
        print(f"| {r['run']} | " + " | ".join(cells) + f" | {100 * m:+.1f} ± {100 * se:.1f} |")
    if len(rows) > 1:
        means = [statistics.fmean(r["stages"][n][0] for r in rows if n in r["stages"]) for n in names]
        diffs = [r["diff"][0] for r in rows]
        print("| **mean** | " + " | ".join(f"{100 * m:.1f}" for m in means)
              + f" | {100 * statistics.fmean(diffs):+.1f} (min {100 * min(diffs):+.1f}) |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

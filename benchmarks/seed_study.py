"""How dependable is a preset? `r1 zero` over several seeds, one after another, and a table.

    python benchmarks/seed_study.py --preset smollm2 --seeds 0 1 2 3 4 --out runs/seeds/new
    python benchmarks/seed_study.py --preset smollm2 --out runs/seeds/old --set rollout.temperature=0.8 ...
    python benchmarks/seed_study.py --plain --out runs/seeds/new          # + the models outside r1
    python benchmarks/seed_study.py --table runs/seeds/old runs/seeds/new  # studies side by side

Each seed trains in its own process (`python -m r1 zero --preset P --set seed=S ...`) into
OUT/seed-S; a seed whose run finished already (summary.json) is not run again, so a study
killed half-way resumes. Per seed: held-out pass@1 before and after with its standard error,
format and EOS rates, wall time and peak RSS of the process; then the mean, minimum,
maximum and spread (max - min) over the seeds, and the standard error of the mean over
seeds. `entropy.png` draws every seed's entropy curve on one plot; the table goes to
OUT/seeds.md and OUT/seeds.json. Under the table: the spread that identical models would
show from the held-out draw alone, when each seed draws its own split (`--set
task.split_seed=0` gives every seed the same problems, so the spread is the training's own).

`--plain` also loads each trained `model/` with plain transformers (`AutoModelForCausalLM`,
greedy, no stop strings; the run's prompt with its `<think>` opening) and measures the share
of completions that end with EOS on the held-out problems, and the accuracy on two-number
sums outside the training range (both terms 21-99, `--plain-problems` of them, the same for
every seed).

`--tools` (a preset with tools) also evaluates each trained model with `r1 eval --from-run`
twice on the held-out problems, with the run's tools and with `--tools none` (the same model
answering from its own arithmetic), and adds the held-out share of episodes that called a
tool and the calculator's calls per episode, before and after training.

A finished seed's checkpoints are deleted (its `model/` stays) so that a long study does not
fill the disk; `--keep-checkpoints` keeps them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = {"min_value": 21, "max_value": 99, "terms": 2, "operations": ["+"]}


def run_seed(preset: str, seed: int, out: Path, sets: list[str]) -> dict:
    """Train one seed (unless done); its wall seconds and peak RSS (GB) are kept in seed.json."""
    record = out / "seed.json"
    if (out / "summary.json").is_file() and record.is_file():
        return json.loads(record.read_text())
    if out.exists():  # a killed run: resume it
        resume = ["--resume"] if (out / "checkpoints").is_dir() else []
    else:
        resume = []
    cmd = [sys.executable, "-m", "r1", "zero", "--preset", preset, "--out", str(out), "--set", f"seed={seed}",
           "--set", "tracking.progress=false", *[x for s in sets for x in ("--set", s)], *resume]
    t0 = time.perf_counter()
    with open(out.parent / f"seed-{seed}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"seed {seed} failed: see {out.parent / f'seed-{seed}.log'}")
    rec = {"seed": seed, "wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 2**20, "command": " ".join(cmd),
           "resumed": bool(resume)}
    record.write_text(json.dumps(rec, indent=1))
    return rec


def plain_checks(run: Path, problems: int) -> dict:
    """EOS rate on the held-out problems and accuracy on sums outside the training range, both
    greedy through plain transformers (benchmarks/plain_transformers.py's `plain`)."""
    cached = run / "plain.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from plain_transformers import plain

    from r1.data.tasks import get_task

    _, outside = get_task("arithmetic", OUTSIDE, seed=12345).splits(1, problems)
    held = plain(run, 1, 64, greedy=True)
    far = plain(run, 1, 64, greedy=True, examples=outside)
    result = {"eos_rate": held["eos_rate"], "heldout_pass@1": held["pass@1"], "outside_pass@1": far["pass@1"],
              "outside_eos_rate": far["eos_rate"], "outside_problems": problems}
    cached.write_text(json.dumps(result, indent=1))
    return result


def tools_checks(run: Path, samples: int) -> dict:
    """pass@1 (and its standard error) of the trained model through `r1 eval --from-run`, with
    the run's tools and without them."""
    cached = run / "tools.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    result = {}
    for name, extra in (("with_tools", []), ("without_tools", ["--tools", "none"])):
        out = run / f"eval-{name.replace('_', '-')}"
        cmd = [sys.executable, "-m", "r1", "eval", "--model", str(run / "model"), "--from-run", str(run),
               "--samples", str(samples), "--no-progress", "--out", str(out), *extra]
        if out.exists():
            cmd.append("--resume")
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        m = json.loads((out / "summary.json").read_text())["metrics"]
        result[name] = {"pass@1": m["pass@1"], "pass@1_se": m["pass@1_se"],
                        "tool_use_rate": m.get("tool_use_rate"), "command": " ".join(cmd[1:])}
    cached.write_text(json.dumps(result, indent=1))
    return result


def seed_row(run: Path, rec: dict) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    before, after = summary["heldout_before"], summary["heldout_after"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    row = {"seed": rec["seed"], "before": before["pass@1"], "after": after["pass@1"],
           "after_se": after.get("pass@1_se"), "format": after["format_rate"], "eos": after.get("eos_rate"),
           "wall_s": rec["wall_s"], "peak_rss_gb": rec["peak_rss_gb"], "problems": summary["heldout_problems"],
           "samples": summary["heldout_samples_per_problem"],
           "entropy": [m.get("entropy") for m in metrics], "temperature": [m.get("temperature") for m in metrics]}
    if (run / "plain.json").is_file():
        row["plain"] = json.loads((run / "plain.json").read_text())
    if "tool_use_rate" in after:
        row["tool_use"] = [before["tool_use_rate"], after["tool_use_rate"]]
        row["calculator_calls"] = [before.get("tool_calls/calculator", 0.0), after.get("tool_calls/calculator", 0.0)]
    if (run / "tools.json").is_file():
        row["tools"] = json.loads((run / "tools.json").read_text())
    return row


def spread(values: list[float]) -> dict:
    n = len(values)
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "spread": max(values) - min(values),
            "se": statistics.stdev(values) / math.sqrt(n) if n > 1 else 0.0}


def expected_range(n: int, sd: float) -> float:
    """E[max - min] of n independent normal draws with standard deviation sd:
    sd · ∫ 1 - Φ(x)^n - (1 - Φ(x))^n dx, integrated on a fine grid."""
    phi, step = statistics.NormalDist().cdf, 0.001
    return sd * step * sum(1 - phi(x) ** n - (1 - phi(x)) ** n for x in (i * step - 8 for i in range(16001)))


def summarise(rows: list[dict]) -> dict:
    out = {"after": spread([r["after"] for r in rows]), "gain": spread([r["after"] - r["before"] for r in rows]),
           "wall_s": spread([r["wall_s"] for r in rows])}
    ses = [r["after_se"] for r in rows if r.get("after_se") is not None]
    if len(rows) > 1 and ses:  # the spread identical models would show, each on its own held-out draw
        out["noise_spread"] = expected_range(len(rows), math.sqrt(statistics.fmean([se * se for se in ses])))
    if all("tools" in r for r in rows):
        out["without_tools"] = spread([r["tools"]["without_tools"]["pass@1"] for r in rows])
        out["above_without_tools"] = spread([r["after"] - r["tools"]["without_tools"]["pass@1"] for r in rows])
    if all("tool_use" in r for r in rows):
        out["tool_use_after"] = spread([r["tool_use"][1] for r in rows])
    plain = [r["plain"] for r in rows if "plain" in r]
    if plain:
        out["plain_eos"] = spread([p["eos_rate"] for p in plain])
        out["plain_outside"] = spread([p["outside_pass@1"] for p in plain])
    return out


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def table(label: str, rows: list[dict], stats: dict) -> str:
    """One study as a Markdown table: a row per seed, then mean / min / max / spread."""
    has_plain = "plain_eos" in stats
    head = "| seed | held-out before | after ± SE | gain | format | EOS | wall |"
    rule = "|---|---|---|---|---|---|---|"
    if has_plain:
        head += " plain: EOS | plain: sums 21–99 |"
        rule += "---|---|"
    lines = [f"**{label}** ({rows[0]['problems']} held-out problems × {rows[0]['samples']} samples; %)", "", head, rule]
    for r in rows:
        line = (f"| {r['seed']} | {pct(r['before'])} | {pct(r['after'])} ± {pct(r['after_se'])} | "
                f"{100 * (r['after'] - r['before']):+.1f} | {pct(r['format'])} | {pct(r['eos'])} | "
                f"{r['wall_s'] / 60:.1f} min |")
        if has_plain:
            p = r.get("plain", {})
            line += f" {pct(p.get('eos_rate'))} | {pct(p.get('outside_pass@1'))} |"
        lines.append(line)
    a, g, w = stats["after"], stats["gain"], stats["wall_s"]
    line = (f"| **mean** (min–max, spread) | | **{pct(a['mean'])}** ± {pct(a['se'])} ({pct(a['min'])}–{pct(a['max'])}, "
            f"**{pct(a['spread'])}**) | {100 * g['mean']:+.1f} (min {100 * g['min']:+.1f}) | | | "
            f"{w['mean'] / 60:.1f} min (max {w['max'] / 60:.1f}) |")
    if has_plain:
        e, o = stats["plain_eos"], stats["plain_outside"]
        line += f" {pct(e['mean'])} (min {pct(e['min'])}) | **{pct(o['mean'])}** (min {pct(o['min'])}) |"
    lines.append(line)
    if all("tool_use" in r for r in rows):
        lines += ["", "| seed | episodes with a call, before → after | calculator calls per episode, before → after | "
                      "`r1 eval` with tools | `r1 eval --tools none` (the same model) | after − without tools |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            t = r.get("tools", {})
            w, wo = t.get("with_tools", {}), t.get("without_tools", {})
            above = f"{100 * (r['after'] - wo['pass@1']):+.1f}" if wo else "–"
            lines.append(f"| {r['seed']} | {pct(r['tool_use'][0])} → {pct(r['tool_use'][1])} | "
                         f"{r['calculator_calls'][0]:.2f} → {r['calculator_calls'][1]:.2f} | "
                         f"{pct(w.get('pass@1'))} ± {pct(w.get('pass@1_se'))} | "
                         f"{pct(wo.get('pass@1'))} ± {pct(wo.get('pass@1_se'))} | {above} |")
        if "above_without_tools" in stats:
            t = stats["above_without_tools"]
            lines.append(f"| **mean** (min) | {pct(stats['tool_use_after']['mean'])} after (min "
                         f"{pct(stats['tool_use_after']['min'])}) | | | {pct(stats['without_tools']['mean'])} | "
                         f"**{100 * t['mean']:+.1f}** (min {100 * t['min']:+.1f}) |")
    if "noise_spread" in stats:
        lines += ["", f"Identical models, each seed evaluated on its own draw of {rows[0]['problems']} held-out "
                      f"problems with these standard errors, would spread by {pct(stats['noise_spread'])} points on "
                      "average; with `task.split_seed` fixed the seeds share their problems and the spread is the "
                      "training's (and the sampling's) own."]
    return "\n".join(lines)


def load_study(out: Path) -> tuple[str, list[dict], dict]:
    data = json.loads((out / "seeds.json").read_text())
    return data["label"], data["rows"], data["stats"]


def entropy_plot(out: Path, rows: list[dict]) -> None:
    from r1.report import figure

    with figure(out / "entropy.png", "Policy entropy per step, one line per seed", size=(7, 4)) as ax:
        for i, r in enumerate(rows):
            ys = [float("nan") if v is None else v for v in r["entropy"]]
            ax.plot(range(1, len(ys) + 1), ys, "o-", ms=2, color=f"C{i}", label=f"seed {r['seed']}")
        ax.set_xlabel("step")
        ax.set_ylabel("entropy (nats/token)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smollm2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, help="the study's folder (one run folder per seed inside)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a config override for every seed")
    ap.add_argument("--label", help="the study's name in the table (default: the preset and the overrides)")
    ap.add_argument("--plain", action="store_true", help="also check the models with plain transformers")
    ap.add_argument("--plain-problems", type=int, default=200)
    ap.add_argument("--tools", action="store_true", help="also evaluate each model with and without its tools")
    ap.add_argument("--tools-samples", type=int, default=2, help="samples per problem of those evaluations")
    ap.add_argument("--keep-checkpoints", action="store_true", help="keep each finished seed's checkpoints")
    ap.add_argument("--table", type=Path, nargs="+", help="print the tables of finished studies, side by side")
    a = ap.parse_args()
    if a.table:
        for study in a.table:
            label, rows, stats = load_study(study)
            print(table(label, rows, stats) + "\n")
        return
    if a.out is None:
        ap.error("--out is needed (or --table)")
    a.out.mkdir(parents=True, exist_ok=True)
    label = a.label or " ".join([f"preset {a.preset}", *a.sets])
    rows = []
    for seed in a.seeds:
        run = a.out / f"seed-{seed}"
        rec = run_seed(a.preset, seed, run, a.sets)
        if a.plain:
            plain_checks(run, a.plain_problems)
        if a.tools:
            tools_checks(run, a.tools_samples)
        if not a.keep_checkpoints:
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
        rows.append(seed_row(run, rec))
        r = rows[-1]
        print(f"seed {seed}: {pct(r['before'])} -> {pct(r['after'])} ± {pct(r['after_se'])}, "
              f"{r['wall_s'] / 60:.1f} min" + (f", plain {r['plain']}" if "plain" in r else ""), flush=True)
    stats = summarise(rows)
    (a.out / "seeds.json").write_text(json.dumps({"label": label, "preset": a.preset, "sets": a.sets,
                                                   "rows": rows, "stats": stats}, indent=1))
    text = table(label, rows, stats)
    (a.out / "seeds.md").write_text(text + "\n")
    entropy_plot(a.out, rows)
    print(text)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()

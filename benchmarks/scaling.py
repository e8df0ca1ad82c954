"""What a GRPO step costs as completions grow longer and groups larger: step time (and its
stages) and peak RSS of `r1 zero`'s trainer, so that a user can predict a run.

    python benchmarks/scaling.py [--model smollm2-135m] [--lengths 128,512,1024] [--groups 4,8,16]
                                 [--steps 3] [--beta 0.04]

Each configuration runs `GRPOTrainer.step` (the product's step: sampling, rewards, reference
log-probs, the update, the weight sync) in a fresh process on the `smollm2` preset with one
prompt per step; completions are sampled to the full length (EOS ignored, no stop string) so
that the length is the one in the table, and every group enters the loss
(`skip_zero_variance=false`), so that the update is always paid for. Lengths are measured at
the middle group size, group sizes at the shortest length. The first step of each process is a
warm-up, left out of the medians; the peak RSS is the process's (`ru_maxrss`). Prints a
markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    g, length = args.group, args.length
    cfg = build_config(read_yaml(preset_path("smollm2")), [
        f"model.name={args.model}", f"rollout.group_size={g}", "rollout.prompts_per_step=1",
        f"rollout.max_new_tokens={length}", "rollout.stop=[]", "rollout.stop_grace_tokens=0",
        f"optim.micro_batch_size={g}", f"algorithm.beta={args.beta}", "algorithm.skip_zero_variance=false",
        "algorithm.dynamic_sampling=false", "task.heldout_size=1", "tracking.progress=false", "seed=0"])
    run_dir = Path(tempfile.mkdtemp(prefix="r1-scaling-"))
    tr = GRPOTrainer(cfg, run_dir)
    tr.setup()
    sample = tr.engine.generate
    tr.engine.generate = lambda ids, n, p: sample(ids, n, dataclasses.replace(p, ignore_eos=True))
    rows = []
    for s in range(args.steps):
        t0 = time.perf_counter()
        ro = tr.step(s)
        rows.append({"step_s": time.perf_counter() - t0, **ro.timings,
                     "tokens": sum(len(c) for c in ro.generation.completion_ids)})
    Path(args.worker_out).write_text(json.dumps(rows))
    shutil.rmtree(run_dir, ignore_errors=True)


def run(args, group: int, length: int) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cmd = [sys.executable, __file__, "--worker", "--worker-out", str(out), "--group", str(group),
           "--length", str(length), "--model", args.model, "--steps", str(args.steps), "--beta", str(args.beta)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"G={group} L={length} failed:\n{proc.stderr.read().decode()[-3000:]}")
    rows = json.loads(out.read_text())[1:]  # the first step warms up
    out.unlink()
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    return {"group": group, "length": length, "tokens": med("tokens"), "step_s": round(med("step_s"), 2),
            **{k: round(med(k), 2) for k in ("generate", "ref_logprobs", "update", "sync")},
            "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lengths", default="128,512,1024")
    ap.add_argument("--groups", default="4,8,16")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--worker-out")
    ap.add_argument("--group", type=int)
    ap.add_argument("--length", type=int)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    lengths = [int(x) for x in args.lengths.split(",")]
    groups = [int(x) for x in args.groups.split(",")]
    mid = groups[len(groups) // 2]
    configs = [(mid, n) for n in lengths] + [(g, lengths[0]) for g in groups if g != mid]
    results = []
    print("| G | completion tokens | step s | generate s | ref log-probs s | update s | sync s | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for g, n in configs:
        r = run(args, g, n)
        results.append(r)
        print(f"| {g} | {n} | {r['step_s']} | {r['generate']} | {r['ref_logprobs']} | {r['update']} | "
              f"{r['sync']} | {r['peak_rss_gb']} |", flush=True)
    base = next(r for r in results if r["group"] == mid and r["length"] == lengths[0])
    for r in results:  # cost per completion token against the smallest configuration: <= 1 is linear or better
        r["s_per_token_vs_base"] = round((r["step_s"] / (r["group"] * r["length"]))
                                         / (base["step_s"] / (base["group"] * base["length"])), 2)
    print(json.dumps({"model": args.model, "beta": args.beta, "results": results}))


if __name__ == "__main__":
    main()

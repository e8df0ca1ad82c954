"""Rollout engines side by side in one run: `r1 zero` (the demo preset, SmolLM2-135M) for a
few GRPO steps with r1's HF engine, colocated vLLM and a vLLM server, each a real run of the
product. Prints per engine the median step time, generation tokens/s, and the log-prob
mismatch between the engine and the trainer on the sampled tokens, as a table and a last
JSON line. Needs vLLM (on a CPU: `make vllm-env`, then run it with .venv-vllm/bin/python).

    .venv-vllm/bin/python benchmarks/vllm_engines.py [--steps 3] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def zero(out: Path, steps: int, *sets: str) -> list[dict]:
    cmd = [sys.executable, "-m", "r1", "zero", "--out", str(out), "--steps", str(steps),
           "--set", "tracking.progress=false", "--set", "train.eval_every=0", "--set", "task.heldout_size=8",
           "--set", "eval.samples=1"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stdout[-2000:] + res.stderr[-2000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows[0]["wall_s"] = time.perf_counter() - t0
    return rows


def start_server(model: str, port: int, compile_: bool, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port", str(port),
           "--max-num-batched-tokens", "16384", "--worker-extension-cls", "r1.rollout.vllm.WorkerExtension",
           "--seed", "0", "--logprobs-mode", "processed_logprobs"] + ([] if compile_ else ["--enforce-eager"])
    from serve_support import wait_healthy

    proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    wait_healthy(f"http://127.0.0.1:{port}", proc, 600, log=lambda: log.read_text()[-3000:])
    return proc


def summary(rows: list[dict]) -> dict:
    timed = rows[1:] or rows  # the first step carries one-off warm-up
    return {"step_s": statistics.median(r["time/step"] for r in timed),
            "generate_tok_s": statistics.median(r["tokens_per_s"] for r in timed),
            "mismatch_mean": statistics.fmean(r["logprob_mismatch_mean"] for r in rows),
            "mismatch_max": max(r["logprob_mismatch_max"] for r in rows),
            "tis_weight": statistics.fmean(r.get("tis_weight_mean", 1.0) for r in rows),
            "wall_s": rows[0]["wall_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="vLLM with compilation (default: enforce_eager)")
    args = ap.parse_args()
    for k, v in {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                 "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(os.sched_getaffinity(0))))}.items():
        os.environ.setdefault(k, v)
    from r1.models import resolve_path
    sys.path.insert(0, str(ROOT / "tests"))
    from serve_support import free_port

    tmp = Path(tempfile.mkdtemp(prefix="r1-vllm-bench-"))
    eager = f"rollout.enforce_eager={str(not args.compile).lower()}"
    results = {"hf": summary(zero(tmp / "hf", args.steps)),
               "vllm": summary(zero(tmp / "vllm", args.steps, "rollout.engine=vllm", eager))}
    port = free_port()
    proc = start_server(resolve_path("smollm2-135m"), port, args.compile, tmp / "server.log")
    try:
        results["vllm-server"] = summary(zero(tmp / "server", args.steps, "rollout.engine=vllm-server",
                                              f"rollout.vllm_server_url=http://127.0.0.1:{port}",
                                              f"rollout.vllm_weights_dir={tmp / 'weights'}"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    print(f"{'engine':12} {'step s':>8} {'gen tok/s':>10} {'|dlogp| mean':>13} {'max':>7} {'TIS w':>6} {'run s':>6}")
    for name, r in results.items():
        print(f"{name:12} {r['step_s']:8.2f} {r['generate_tok_s']:10.0f} {r['mismatch_mean']:13.4f} "
              f"{r['mismatch_max']:7.3f} {r['tis_weight']:6.3f} {r['wall_s']:6.0f}")
    hf = results["hf"]
    for name in ("vllm", "vllm-server"):
        results[name]["step_vs_hf"] = results[name]["step_s"] / hf["step_s"]
        results[name]["generate_vs_hf"] = results[name]["generate_tok_s"] / hf["generate_tok_s"]
    print(json.dumps({"benchmark": "vllm_engines", "steps": args.steps, "compile": args.compile, **results}))


if __name__ == "__main__":
    main()

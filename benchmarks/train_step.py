"""The training phase's achieved FLOP/s against this machine's measured bf16 matmul peak.

    python benchmarks/train_step.py [--model smollm2-135m] [--prompts 1] [--group 8]
                                    [--prompt-len 90] [--completion-len 128]

One GRPO update (forward + backward + fused AdamW) over P prompts x G completions, through
r1's shared-prefix pass, timed after warm-up, in both of r1's bf16 modes, alternating: a
bf16 compute copy with fp32 master weights (the default) and fp32 weights under autocast. Useful FLOPs count 6 x
(non-embedding parameters) per token actually processed (P*Lp + P*G*Lc) plus the LM head
on completion positions. The peak is a 2048x2048 bf16 matmul timed between the steps (median).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from r1.models import load_model
from r1.trainers.policy import shared_prefix_logprobs


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
    ap.add_argument("--profile", action="store_true", help="print where a bf16 update spends its time")
    args = ap.parse_args()
    model, tok = load_model(args.model, device="cpu")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    work = copy.deepcopy(model).to(torch.bfloat16).train()  # r1's default on bf16 CPUs
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

    def loss_of(m):
        logp, _, mask = shared_prefix_logprobs(m, prompts, comps, args.group, tok.pad_token_id, 1.0)
        return -(logp * mask).sum() / mask.sum()

    def step_bf16():  # bf16 compute copy, fp32 master weights and AdamW (precision=bf16)
        loss_of(work).backward()
        for master, w in zip(model.parameters(), work.parameters()):
            master.grad, w.grad = w.grad.float(), None
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for master, w in zip(model.parameters(), work.parameters()):
                w.copy_(master)

    def step_autocast():  # fp32 weights under bf16 autocast (precision=bf16-autocast)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(model)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        step_bf16()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step_bf16()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    modes = {"bf16": step_bf16, "bf16-autocast": step_autocast}
    times: dict[str, list[float]] = {m: [] for m in modes}
    peaks = []
    for rep in range(args.repeats + 1):  # alternating; the first round warms up
        for name, fn in modes.items():
            t0 = time.perf_counter()
            fn()
            if rep:
                times[name].append(time.perf_counter() - t0)
        if rep:
            peaks.append(matmul_peak())
    peak = statistics.median(peaks)
    out = {"tokens": tokens, "bf16_peak_gflops": round(peak / 1e9, 1)}
    for name, ts in times.items():
        step = statistics.median(ts)
        achieved = flops / step
        print(f"{name:>13}: update of {len(comps)} sequences ({tokens} tokens): {step:.2f} s, "
              f"{achieved / 1e9:.0f} GFLOP/s = {100 * achieved / peak:.1f}% of the bf16 matmul peak "
              f"({peak / 1e9:.0f} GFLOP/s, measured between the steps)")
        key = "" if name == "bf16" else "autocast_"
        out.update({f"{key}update_s": round(step, 3), f"{key}achieved_gflops": round(achieved / 1e9, 1),
                    f"{key}fraction_of_peak": round(achieved / peak, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""The GRPO update's achieved FLOP/s against this machine's measured bf16 matmul peak,
timed through the trainer's own code: `trainers.policy.Policy` and `trainers.update.PolicyUpdate`.

    python benchmarks/train_step.py [--model smollm2-135m] [--prompts 1] [--group 8]
                                    [--prompt-len 90] [--completion-len 128] [--beta 0.04]
                                    [--repeats 3] [--profile]

A synthetic step (random prompt and completion tokens, advantages ±1 so that every row enters
the loss) goes through `PolicyUpdate.ref_logprobs` (with beta > 0) and `PolicyUpdate.update`:
shared-prefix forward, clipped surrogate + KL, backward, gradients into the fp32 masters,
clipping, fused AdamW, the compute copy refreshed — exactly what `GRPOTrainer.step` runs after
sampling. Both of r1's bf16 modes, alternating: `model.precision=bf16` (a bf16 compute copy
with fp32 masters, the default) and `bf16-autocast` (fp32 weights under autocast). Useful
FLOPs count 6 x (non-embedding parameters) per token processed (P*Lp + P*G*Lc) plus the LM
head on completion positions; the peak is a 2048x2048 bf16 matmul timed between the steps
(median). The floor: every projection's three matmuls (forward, gradient of the input, of the
weight) at the update's shapes on the compute copy's own weights, back to back, nothing else:
no update through any code can take less on this machine's kernels, and its share of the
peak is the most the update can reach. `--profile` prints where one bf16 update spends its
time. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from r1.config import build_config, read_yaml
from r1.presets import preset_path
from r1.trainers.distributed import Dist
from r1.trainers.policy import Policy
from r1.trainers.update import PolicyUpdate
from r1.types import Generation, Rollout


def matmul_peak(dtype=torch.bfloat16, n=2048, reps=20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def matmul_floor(model, rows: int, head_rows: int, reps: int = 3) -> float:
    """Seconds for the update's matmuls alone: for every nn.Linear of `model` (the decoder's at
    `rows` tokens, the LM head's at `head_rows`), y = x W^T, dx = dy W and dW = dy^T x, in the
    weights' dtype, back to back; the best of `reps` rounds."""
    head = model.get_output_embeddings()
    shapes = [(m.weight, head_rows if m is head else rows) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    work = [(w.detach(), torch.randn(n, w.shape[1], dtype=w.dtype), torch.randn(n, w.shape[0], dtype=w.dtype))
            for w, n in shapes]
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            for w, x, dy in work:
                torch.nn.functional.linear(x, w)
                dy @ w
                dy.t() @ x
            best = min(best, time.perf_counter() - t0)
    return best


def synthetic_rollout(args, vocab: int) -> Rollout:
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    b = args.prompts * args.group
    comps = [torch.randint(3, vocab, (args.completion_len,), generator=g).tolist() for _ in range(b)]
    gen = Generation(completion_ids=comps, logprobs=[[-1.0] * args.completion_len for _ in comps],
                     finish_reasons=["length"] * b)
    return Rollout(examples=[None] * args.prompts, prompt_ids=prompts, group_size=args.group, generation=gen,
                   completions=[""] * b, advantages=[1.0 if i % 2 else -1.0 for i in range(b)],
                   keep=[True] * b, rows=list(range(b)))


class Side:
    """One precision mode: the trainer's Policy and PolicyUpdate, and a reference copy (beta > 0)."""

    def __init__(self, args, precision: str):
        import copy

        overrides = [f"model.name={args.model}", f"model.precision={precision}", f"algorithm.beta={args.beta}",
                     f"rollout.group_size={args.group}", f"rollout.prompts_per_step={args.prompts}",
                     f"rollout.max_new_tokens={args.completion_len}",
                     f"optim.micro_batch_size={args.group * args.prompts}", "optim.lr=1e-6"]
        self.cfg = build_config(read_yaml(preset_path("smollm2")), overrides)
        self.policy = Policy(self.cfg.model, self.cfg.optim, 1000, "cpu")
        ref = None
        if args.beta > 0:  # as GRPOTrainer.setup builds it
            ref = copy.deepcopy(self.policy.compute_model).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
        self.update = PolicyUpdate(self.cfg, self.policy, Dist(), ref, share_prefix=True, device="cpu",
                                   pad_id=self.policy.tokenizer.pad_token_id)

    def step(self, rollout: Rollout) -> tuple[float, float]:
        """(reference log-probs seconds, update seconds)."""
        t0 = time.perf_counter()
        self.update.ref_logprobs(rollout)
        t1 = time.perf_counter()
        self.update.update(rollout)
        return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=1)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=90)
    ap.add_argument("--completion-len", type=int, default=128)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="bf16,bf16-autocast")
    ap.add_argument("--profile", action="store_true", help="print where a bf16 update spends its time")
    args = ap.parse_args()
    sides = {m: Side(args, m) for m in args.modes.split(",")}
    model = next(iter(sides.values())).policy.model
    rollout = synthetic_rollout(args, model.config.vocab_size)
    emb = model.get_input_embeddings().weight.numel()
    non_emb = sum(p.numel() for p in model.parameters()) - emb
    n_comp = args.prompts * args.group
    tokens = args.prompts * args.prompt_len + n_comp * args.completion_len
    flops = 6 * non_emb * tokens + 6 * emb * n_comp * args.completion_len  # LM head on completions only

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        side = next(iter(sides.values()))
        side.step(rollout)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            side.update.update(rollout)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    times: dict[str, list[float]] = {m: [] for m in sides}
    refs: dict[str, list[float]] = {m: [] for m in sides}
    peaks = []
    for rep in range(args.repeats + 1):  # alternating; the first round warms up
        for name, side in sides.items():
            ref_s, upd_s = side.step(rollout)
            if rep:
                times[name].append(upd_s)
                refs[name].append(ref_s)
        if rep:
            peaks.append(matmul_peak())
    peak = statistics.median(peaks)
    out = {"tokens": tokens, "bf16_peak_gflops": round(peak / 1e9, 1), "beta": args.beta}
    if "bf16" in sides:
        floor = matmul_floor(sides["bf16"].policy.compute_model, tokens, n_comp * args.completion_len)
        print(f"        floor: the update's matmuls alone (every projection's forward and two backward matmuls "
              f"at these shapes, back to back): {floor:.2f} s = {100 * flops / floor / peak:.1f}% of the peak; "
              f"60% of the peak would be {flops / (0.6 * peak):.2f} s")
        out.update({"matmul_floor_s": round(floor, 3), "floor_fraction_of_peak": round(flops / floor / peak, 3)})
    for name, ts in times.items():
        step = statistics.median(ts)
        achieved = flops / step
        print(f"{name:>13}: Policy update of {n_comp} sequences ({tokens} tokens): {step:.2f} s, "
              f"{achieved / 1e9:.0f} GFLOP/s = {100 * achieved / peak:.1f}% of the bf16 matmul peak "
              f"({peak / 1e9:.0f} GFLOP/s, measured between the steps); reference log-probs "
              f"{statistics.median(refs[name]):.2f} s")
        key = "" if name == "bf16" else f"{name.replace('-', '_')}_"
        out.update({f"{key}update_s": round(step, 3), f"{key}ref_logprobs_s": round(statistics.median(refs[name]), 3),
                    f"{key}achieved_gflops": round(achieved / 1e9, 1), f"{key}fraction_of_peak": round(achieved / peak, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

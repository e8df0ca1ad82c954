"""r1's GRPO against TRL's GRPOTrainer on this CPU, side by side, in one run.

    pip install -e ".[bench]"      # TRL is a benchmark-only dependency
    python benchmarks/grpo_vs_trl.py [--steps 6] [--rounds 3] [--group 8] [--max-tokens 128]

Both sides train the same model (smollm2-135m by default) on the same prompts in the same
order (the `r1 zero` preset's arithmetic task and template, `<think>` forced; TRL reads
r1's step order unshuffled), with the same group
size and completions per step, max completion length, sampling temperature, learning
rate, beta, clip range and rewards (accuracy + format + tag_count, the same Python
functions), sampling until EOS or the length limit (no stop string on either side).
Each side runs in its own process, alternating r1, TRL, r1, TRL...; a process's first
step (warm-up) is left out of the medians. Prints each side's median seconds per step,
peak RSS and mean reward, then as the last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def shared_setup(args):
    """The prompts (rendered text), examples and reward weights both sides use."""
    from r1.config import build_config, read_yaml
    from r1.data.tasks import get_task
    from r1.models import load_model
    from r1.presets import preset_path

    cfg = build_config(read_yaml(preset_path("smollm2")), r1_overrides(args))
    task = get_task(cfg.task.name, cfg.task.params, seed=cfg.seed)
    train, _ = task.splits(cfg.task.train_size, cfg.task.heldout_size)
    _, tok = load_model(args.model, device="cpu")
    from r1.data.prompts import PromptFormat

    return cfg, task, train, PromptFormat.of(cfg, task.answer_hint), tok


def r1_overrides(args) -> list[str]:
    return [
        f"model.name={args.model}", f"train.steps={args.steps}", "train.save_every=1000000",
        "train.eval_every=0", "task.heldout_size=1", "eval.samples=1", "tracking.progress=false",
        f"rollout.group_size={args.group}", f"rollout.prompts_per_step={args.prompts}",
        f"rollout.max_new_tokens={args.max_tokens}", "rollout.stop=[]", f"rollout.temperature={args.temperature}",
        f"optim.lr={args.lr}", f"algorithm.beta={args.beta}", "algorithm.clip_high=0.2", "optim.warmup_steps=0",
        "optim.schedule=constant", f"optim.micro_batch_size={args.group * args.prompts}",
        f"seed={args.seed}", *args.r1_set,
    ]


def r1_worker(args, out: Path) -> None:
    from r1.config import build_config, read_yaml
    from r1.presets import preset_path
    from r1.trainers.grpo import GRPOTrainer

    cfg = build_config(read_yaml(preset_path("smollm2")), r1_overrides(args))
    with tempfile.TemporaryDirectory(prefix="r1-bench-") as tmp:  # a run's folder is 2 GB (checkpoints)
        run = Path(tmp)
        GRPOTrainer(cfg, run).train()
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    out.write_text(json.dumps({"step_s": [r["time/step"] for r in rows], "reward": [r["reward"] for r in rows],
                               "stages": {k: [r[k] for r in rows] for k in rows[0] if k.startswith("time/")}}))


def trl_worker(args, out: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1.models import load_model
    from r1.rewards import registry
    from r1.trainers.policy import step_indices

    cfg, task, train, prompt, tok = shared_setup(args)
    prefill = prompt.prefill
    by_question = {ex.question: ex for ex in train}
    # r1's prompt order, step by step, read in order by TRL (shuffle_dataset=False)
    order = [i for step in range(args.steps) for i in step_indices(len(train), args.prompts, args.seed, step)]
    ds = Dataset.from_list([{"prompt": prompt.render(train[i].question, tok).text, "question": train[i].question}
                            for i in order])

    def make_reward(name):
        def fn(prompts, completions, question, **kw):
            exs = [by_question[q] for q in question]
            return registry.get_reward(name)([prefill + c for c in completions], exs, task)

        fn.__name__ = name
        return fn

    names = list(cfg.rewards)
    model, tok = load_model(args.model, device="cpu")
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    rewards: list[float] = []

    class Rewards(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    conf = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"), use_cpu=True, bf16=args.trl_bf16,
        per_device_train_batch_size=args.group * args.prompts, num_generations=args.group,
        gradient_accumulation_steps=1, max_completion_length=args.max_tokens, temperature=args.temperature,
        learning_rate=args.lr, beta=args.beta, epsilon=0.2, max_steps=args.steps, logging_steps=1,
        report_to=[], save_strategy="no", seed=args.seed, lr_scheduler_type="constant", warmup_steps=0,
        reward_weights=[cfg.rewards[n] for n in names], loss_type="dapo", scale_rewards="group",
        disable_dropout=True, shuffle_dataset=False,
    )
    trainer = GRPOTrainer(model=model, args=conf, reward_funcs=[make_reward(n) for n in names],
                          train_dataset=ds, processing_class=tok, callbacks=[Timer(), Rewards()])
    torch.manual_seed(args.seed)
    trainer.train()
    shutil.rmtree(conf.output_dir, ignore_errors=True)
    out.write_text(json.dumps({"step_s": times, "reward": rewards}))


def run_side(side: str, args, seed: int) -> dict:
    """One side in its own process; round k of both sides uses seed + k (same prompts, same order)."""
    out = Path(tempfile.mkstemp(prefix=f"bench-{side}-", suffix=".json")[1])
    cmd = [sys.executable, __file__, "--worker", side, "--worker-out", str(out)] + args.passthrough
    cmd += ["--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if not args.verbose else None,
                            stderr=subprocess.PIPE if not args.verbose else None)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        raise SystemExit(f"{side} worker failed:\n{err}")
    data = json.loads(out.read_text())
    out.unlink()
    data["peak_rss_mb"] = usage.ru_maxrss / 1024
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=6, help="steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="r1/TRL process pairs, alternating, seed + round "
                    "each: one round is one trajectory per side, too few to compare rewards")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    ap.add_argument("--prompts", type=int, default=1, help="prompts per step")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trl-bf16", action="store_true", help="TRL with bf16 autocast (default: its fp32 CPU path)")
    ap.add_argument("--r1-set", action="append", default=[], help="extra r1 --set overrides")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--worker", choices=["r1", "trl"])
    ap.add_argument("--worker-out")
    args = ap.parse_args()
    if args.worker:
        (r1_worker if args.worker == "r1" else trl_worker)(args, Path(args.worker_out))
        return
    args.passthrough = [a for a in sys.argv[1:] if a != "--verbose"]
    sides = {"r1": [], "trl": []}
    t0 = time.time()
    for rnd in range(args.rounds):
        for side in ("r1", "trl"):
            res = run_side(side, args, seed=args.seed + rnd)
            sides[side].append(res)
            print(f"round {rnd + 1} {side:3s}: steps {[round(s, 1) for s in res['step_s']]} "
                  f"rss {res['peak_rss_mb']:.0f} MB", flush=True)
    summary = {}
    for side, runs in sides.items():
        steps = [s for r in runs for s in r["step_s"][1:]]
        rewards = [x for r in runs for x in r["reward"]]
        ci = 1.96 * statistics.stdev(rewards) / len(rewards) ** 0.5 if len(rewards) > 1 else float("nan")
        summary[side] = {"s_per_step": statistics.median(steps), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                         "mean_reward": statistics.fmean(rewards) if rewards else float("nan"), "ci": ci,
                         "rewards": rewards}
        print(f"{side:3s}: median {summary[side]['s_per_step']:.2f} s/step, peak RSS "
              f"{summary[side]['peak_rss_mb']:.0f} MB, mean reward {summary[side]['mean_reward']:.3f} "
              f"± {ci:.3f} (95% CI over {len(rewards)} steps)")
    # same prompts step for step: the paired difference of the per-step mean rewards
    diffs = [a - b for a, b in zip(summary["r1"]["rewards"], summary["trl"]["rewards"])]
    diff = statistics.fmean(diffs) if diffs else float("nan")
    diff_ci = 1.96 * statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    print(f"reward r1 - TRL, paired by step: {diff:+.3f} ± {diff_ci:.3f} (95% CI)")
    r1_stages = {k: statistics.median([x for r in sides["r1"] for x in r["stages"][k][1:]])
                 for k in sides["r1"][0]["stages"]}
    print("r1 median stage seconds: " + ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in r1_stages.items()))
    ratio = summary["r1"]["s_per_step"] / summary["trl"]["s_per_step"]
    print(json.dumps({
        "r1_s_per_step": round(summary["r1"]["s_per_step"], 3), "trl_s_per_step": round(summary["trl"]["s_per_step"], 3),
        "ratio": round(ratio, 3), "r1_peak_rss_mb": round(summary["r1"]["peak_rss_mb"]),
        "trl_peak_rss_mb": round(summary["trl"]["peak_rss_mb"]), "r1_mean_reward": round(summary["r1"]["mean_reward"], 3),
        "trl_mean_reward": round(summary["trl"]["mean_reward"], 3),
        "reward_diff": round(diff, 3), "reward_diff_ci95": round(diff_ci, 3), "trl_bf16": args.trl_bf16,
        "config": {k: getattr(args, k) for k in ("model", "steps", "rounds", "group", "prompts", "max_tokens",
                                                  "temperature", "lr", "beta")},
        "wall_s": round(time.time() - t0),
    }))


if __name__ == "__main__":
    main()

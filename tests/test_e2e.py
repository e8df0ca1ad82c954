"""End to end on the offline tiny model: training changes the weights, logs the reward,
leaves every artefact, survives SIGKILL and resumes."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r1.config import build_config, read_yaml
from r1.presets import preset_path
from r1.trainers import checkpoint as ckpt
from r1.trainers.grpo import GRPOTrainer

ROOT = Path(__file__).resolve().parents[1]


def tiny_cfg(*overrides):
    return build_config(read_yaml(preset_path("tiny")), ["tracking.progress=false", *overrides])


@pytest.fixture
def varied_reward():
    """A custom reward with variance on the random tiny model's output (the built-in
    rewards are almost always 0 there, and all-equal groups carry no gradient)."""
    from r1.rewards import registry

    @registry.register("test_byte_share")
    def byte_share(completions, examples, task):
        return [sum(ch in "aeiou0123456789" for ch in c) / max(len(c), 1) for c in completions]

    yield "test_byte_share"
    registry.REWARDS.pop("test_byte_share")


def test_tiny_run_trains_and_leaves_artefacts(tmp_path, varied_reward):
    from r1.models import load_model

    cfg = tiny_cfg("train.steps=3", "train.save_every=2", f"rewards.{varied_reward}=1.0")
    out = tmp_path / "run"
    summary = GRPOTrainer(cfg, out).train()
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "versions.json",
                 "plots/reward.png", "plots/response_length.png", "plots/reflection.png",
                 "eval/heldout_before.jsonl", "eval/heldout_after.jsonl"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["zero_variance_groups"] < cfg.rollout.prompts_per_step  # something was learned from
        for key in ("reward", f"rewards/{varied_reward}", "rewards/accuracy", "rewards/format", "rewards/tag_count", "accuracy",
                    "format_rate", "response_length_mean", "response_length_max", "clip_frac", "kl",
                    "entropy", "grad_norm", "time/generate", "time/update", "tokens_per_s"):
            assert key in r, key
    assert {"accuracy", "format_rate"} <= set(summary["heldout_before"])
    assert {"accuracy", "format_rate"} <= set(summary["heldout_after"])
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000002", "step-000003"]
    trained, _ = load_model(str(out / "model"), device="cpu")
    base, _ = load_model("tiny", device="cpu")
    changed = sum(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    assert changed > 0, "training did not change any parameter"
    assert "## Sample completions, before and after" in (out / "report.md").read_text()


def test_a_run_directory_is_never_overwritten(tmp_path):
    from r1.errors import R1Error

    cfg = tiny_cfg("train.steps=1")
    GRPOTrainer(cfg, tmp_path / "run").train()
    with pytest.raises(R1Error, match="already holds a run"):
        GRPOTrainer(cfg, tmp_path / "run")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    full = tiny_cfg("train.steps=4", "train.save_every=2")
    GRPOTrainer(full, tmp_path / "a").train()
    half = tiny_cfg("train.steps=4", "train.save_every=2")
    t = GRPOTrainer(half, tmp_path / "b")
    t.cfg.train.steps = 2  # stop after the first checkpoint, as a killed run would
    t.train()
    (tmp_path / "b" / "model").rename(tmp_path / "b" / "model-half")
    GRPOTrainer(tiny_cfg("train.steps=4", "train.save_every=2"), tmp_path / "b", resume=True).train()
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-000004" / "model.pt")
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-000004" / "model.pt")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, 1, model, opt, sched, {})
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(root, 2, model, opt, sched, {})
    assert ckpt.latest_checkpoint(root).name == "step-000001"
    assert not (root / "step-000002").exists()


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "r1", "zero", "--preset", "tiny", "--out", str(out), "--steps", "30",
           "--set", "train.save_every=1", "--set", "tracking.progress=false",
           "--set", "rollout.max_new_tokens=32"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            latest = ckpt.latest_checkpoint(out / "checkpoints") if (out / "checkpoints").exists() else None
            if latest is not None and int(latest.name.split("-")[1]) >= 3:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        time.sleep(0.3)  # land somewhere inside a later step (possibly mid-save)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = ckpt.latest_checkpoint(out / "checkpoints")
    assert killed_at is not None
    for d in (out / "checkpoints").glob("step-*"):  # every visible checkpoint is whole
        assert {p.name for p in d.iterdir()} == {"model.pt", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}
        torch.load(d / "model.pt")
    done = int(killed_at.name.split("-")[1])
    assert done < 30, "the run finished before it could be killed"
    res = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed from {killed_at}" in res.stdout.replace("\n", "") or f"(step {done})" in res.stdout
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))
    assert (out / "model" / "config.json").is_file()


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    GRPOTrainer(tiny_cfg("train.steps=1", "tracking.tensorboard=true"), tmp_path / "run").train()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("overrides", [
    ["algorithm.beta=0.04", "algorithm.kl_estimator=k3"],  # frozen reference copy
    ["model.lora.enabled=true", "model.lora.r=4", "algorithm.beta=0.04"],  # reference = adapters off
    ["algorithm.mu=2", "algorithm.loss_agg=seq-mean-token-sum-norm", "algorithm.advantage=dr_grpo"],
    ["model.gradient_checkpointing=true", "optim.micro_batch_size=3", "algorithm.loss_agg=seq-mean-token-mean"],
], ids=["kl-ref", "lora-kl", "mu2-drgrpo", "ckpt-accum"])
def test_training_variants(tmp_path, varied_reward, overrides):
    from r1.models import load_model

    cfg = tiny_cfg("train.steps=2", f"rewards.{varied_reward}=1.0", *overrides)
    GRPOTrainer(cfg, tmp_path / "run").train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    if cfg.algorithm.beta > 0:
        # after the first update the policy has moved away from the reference
        assert rows[-1]["kl"] > 0 and "time/ref_logprobs" in rows[-1]
    trained, _ = load_model(str(tmp_path / "run" / "model"), device="cpu")  # LoRA is merged on save
    base, _ = load_model("tiny", device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))


def test_bf16_compute_copy_matches_autocast_and_keeps_fp32_masters(tmp_path, varied_reward):
    """precision=bf16: forward/backward on a bf16 copy, fp32 master weights take the step and
    are copied back; one update lands close to the autocast update from the same rollout."""
    results = {}
    for precision in ("bf16", "bf16-autocast", "fp32"):
        cfg = tiny_cfg("train.steps=1", f"rewards.{varied_reward}=1.0", f"model.precision={precision}")
        tr = GRPOTrainer(cfg, tmp_path / precision)
        tr.setup()
        before = [p.detach().clone() for p in tr.model.parameters()]
        rollout = tr.generate(0)
        tr.score(rollout)
        tr.advantage(rollout)
        rows = list(range(rollout.size))
        tr.update(rollout, rows, tr.ref_logprobs(rollout, rows))
        assert all(p.dtype == torch.float32 for p in tr.model.parameters())
        if precision == "bf16":
            assert tr.compute_model is not tr.model
            for m, w in zip(tr.model.parameters(), tr.compute_model.parameters()):
                assert w.dtype == torch.bfloat16 and torch.equal(w, m.to(torch.bfloat16)) and w.grad is None
        else:
            assert tr.compute_model is tr.model
        results[precision] = torch.cat([(p.detach() - b).flatten() for p, b in zip(tr.model.parameters(), before)])
    step = results["fp32"]
    assert step.abs().max() > 0
    for precision in ("bf16", "bf16-autocast"):
        cos = torch.nn.functional.cosine_similarity(results[precision], step, dim=0)
        print(precision, float(cos))
        assert cos > 0.9, (precision, cos)


NAN_REWARD = '''
import math


def sometimes_nan(completions, examples, task):
    """Varied on the tiny model's output, and NaN or inf for a third of the samples."""
    out = []
    for i, c in enumerate(completions):
        share = sum(ch in "aeiou0123456789" for ch in c) / max(len(c), 1)
        out.append([share, math.nan, math.inf][i % 3])
    return out
'''


@pytest.mark.slow
def test_zero_with_a_reward_returning_nan_finishes_with_finite_weights(tmp_path):
    """`r1 zero --preset tiny` with a custom reward (a file) that returns NaN and inf for some
    samples: the run finishes, every weight is finite, and the failures are in metrics.jsonl."""
    from safetensors.torch import load_file

    reward = tmp_path / "nan_reward.py"
    reward.write_text(NAN_REWARD)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "r1", "zero", "--preset", "tiny", "--out", str(out), "--steps", "3",
           "--set", "tracking.progress=false", "--set", f"rewards.{reward}:sometimes_nan=1.0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    name = f"reward_failures/{reward}:sometimes_nan"
    for r in rows:
        # samples 1, 2, 4, 5, 7 of each step's 8 (2 prompts x 4) are NaN or inf
        assert r["reward_nonfinite"] == r[name] == r["reward_failures"] == 5
        assert all(math.isfinite(r[k]) for k in ("reward", "loss", "grad_norm"))
    assert sum(r["reward_nonfinite"] for r in rows) >= 3
    assert any(r["grad_norm"] > 0 for r in rows)  # the finite scores still taught it something
    weights = load_file(out / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert "not finite numbers" in res.stderr + res.stdout


def test_a_non_finite_advantage_or_gradient_stops_with_a_clear_error_and_intact_weights(tmp_path, varied_reward,
                                                                                        monkeypatch):
    """Guards behind the reward registry: if a NaN reaches the advantages (here a broken
    estimator) or the gradient, the run stops with an error naming it, before any update."""
    from r1.algorithms.advantages import ADVANTAGES
    from r1.errors import R1Error

    monkeypatch.setitem(ADVANTAGES, "grpo", lambda rewards, g, eps=1e-6: rewards * float("nan"))
    cfg = tiny_cfg("train.steps=1", f"rewards.{varied_reward}=1.0")
    tr = GRPOTrainer(cfg, tmp_path / "a")
    with pytest.raises(R1Error, match="advantage 'grpo' gave nan for sample 0"):
        tr.train()
    from r1.models import build_tiny

    fresh, _ = build_tiny()  # the weights the run started from
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), tr.model.parameters()))
    monkeypatch.undo()
    tr = GRPOTrainer(cfg, tmp_path / "b")
    tr.setup()
    before = [p.detach().clone() for p in tr.model.parameters()]
    for p in tr.model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    with pytest.raises(R1Error, match="gradient norm is nan"):
        tr.policy.step()
    assert all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))


@pytest.mark.parametrize("correction", ["auto", "tis"])
def test_mu2_first_pass_ratio_is_one_and_the_engine_mismatch_is_measured(tmp_path, varied_reward, correction):
    """mu = 2, top-p 0.9, T 0.7: pi_old is the trainer's own model before the step, so the
    first pass's ratio is exactly 1 whatever engine sampled; the HF engine's log-probs
    differ from the trainer's by ~1e-3 (bf16 sampling copy, fp32 masters); truncated
    importance sampling is off for it by default, and on when asked."""
    cfg = tiny_cfg("train.steps=2", f"rewards.{varied_reward}=1.0", "algorithm.mu=2", "rollout.top_p=0.9",
                   "rollout.temperature=0.7", f"algorithm.rollout_correction={correction}")
    GRPOTrainer(cfg, tmp_path / "run").train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["ratio_first_pass_max_dev"] == 0.0
        assert 0 < r["logprob_mismatch_mean"] < 0.02 and r["logprob_mismatch_max"] < 0.5
        assert ("tis_weight_mean" in r) == (correction == "tis")
        if correction == "tis":
            assert 0.9 < r["tis_weight_mean"] <= cfg.algorithm.tis_cap

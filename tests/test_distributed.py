"""Data-parallel GRPO: 2 processes (gloo, CPU) launched by `accelerate launch`, replicated
(ddp.yaml) or sharded with FSDP2 (fsdp.yaml, fsdp-grad-op.yaml), end their steps with the
parameters that 1 process reaches on the combined batch; a sharded run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
RECIPE = {
    "seed": 3,
    "model": {"name": "tiny", "precision": "fp32"},
    "task": {"name": "arithmetic", "params": {"digits": 1}, "train_size": 32, "heldout_size": 4},
    "rollout": {"group_size": 4, "prompts_per_step": 4, "max_new_tokens": 12, "temperature": 1.0},
    # token-mean over the whole step and a KL term: both need the global counts to match
    "algorithm": {"beta": 0.04, "loss_agg": "token-mean"},
    "optim": {"lr": 5.0e-3, "micro_batch_size": 4, "warmup_steps": 0, "grad_clip": 1.0},
    # the random tiny model earns no task reward; a reward that varies within each group
    # (the share of vowels, from a custom reward file) gives every group an advantage
    "rewards": {"accuracy": 1.0, "format": 0.5, "VOWELS": 1.0},
    "train": {"steps": 2, "save_every": 2, "eval_every": 0},
    "eval": {"samples": 1, "max_new_tokens": 8},
    "tracking": {"progress": False},
}


VOWELS = """
def vowels(completions, examples, task):
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]
"""


def _recipe(base: Path, data: dict) -> Path:
    (base / "vowels.py").write_text(VOWELS)
    rewards = {(f"{base / 'vowels.py'}:vowels" if k == "VOWELS" else k): v for k, v in data["rewards"].items()}
    recipe = base / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**data, "rewards": rewards}))
    return recipe


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("WORLD_SIZE", None)
    return env


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dp")
    recipe = _recipe(base, RECIPE)
    one = subprocess.run([sys.executable, "-m", "r1", "grpo", str(recipe), "--out", str(base / "one")],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _launch("ddp.yaml", recipe, base / "two", 29617)
    return base / "one", base / "two", two


def _launch(config: str, recipe: Path, out: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "recipes/accelerate" / config),
         "--num_processes", "2", "--main_process_port", str(port), "-m", "r1", "grpo", str(recipe),
         "--out", str(out), *extra], env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_processes_match_one_process_on_the_combined_batch(runs):
    import torch

    one, two, _ = runs
    w1, w2 = _weights(one), _weights(two)
    assert w1.keys() == w2.keys()
    from r1.models import build_tiny

    init = build_tiny()[0].state_dict()
    moved = max(float((w1[k] - init[k]).abs().max()) for k in w1 if k in init)
    assert moved > 1e-3  # the steps really changed the weights...
    for k in w1:  # ...and both runs changed them the same way
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)


def test_rank0_logs_the_whole_step(runs):
    one, two, _ = runs
    m1 = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m2] == [1, 2]  # written once, by rank 0
    for a, b in zip(m1, m2):
        for key in ("reward", "accuracy", "format_rate", "response_length_mean", "zero_variance_groups"):
            assert a[key] == pytest.approx(b[key], abs=1e-9), key
        for key in ("loss", "kl", "grad_norm", "clip_frac"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-6), key
    r1 = [json.loads(x) for x in (one / "rollouts.jsonl").read_text().splitlines()]
    r2 = [json.loads(x) for x in (two / "rollouts.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in r1] == [r["completion"] for r in r2]  # 16 rows a step, same samples
    assert len(r2) == 2 * 16
    versions = json.loads((two / "versions.json").read_text())
    assert versions["processes"] == 2 and (two / "report.md").is_file()
    assert sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.startswith("step-")) == ["step-000002"]


@pytest.mark.parametrize("config, port", [("fsdp.yaml", 29620), ("fsdp-grad-op.yaml", 29621)])
def test_sharded_fsdp_matches_one_process(runs, tmp_path, config, port):
    import torch

    one, _, _ = runs
    recipe = _recipe(tmp_path, RECIPE)
    _launch(config, recipe, tmp_path / "fsdp", port)
    w1, w2 = _weights(one), _weights(tmp_path / "fsdp")
    assert w1.keys() == w2.keys()  # the tied LM head saved once, as one process saves it
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)
    m1 = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4, abs=1e-7)


HALF_VOWELS = """
def vowels(completions, examples, task):
    # only problems with an odd id number earn anything: the other groups are constant and skipped
    odd = [int("".join(ch for ch in str(ex.id) if ch.isdigit()) or 0) % 2 for ex in examples]
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) if o else 0.0 for c, o in zip(completions, odd)]
"""


def test_sharded_ranks_stay_in_step_with_unequal_micro_batches(tmp_path):
    """Ranks whose groups were skipped run fewer micro-batches; FSDP needs every rank in
    every forward/backward: the idle ranks run weightless dummies, and the result still
    equals one process."""
    import torch

    data = {**RECIPE, "train": {**RECIPE["train"], "steps": 3, "save_every": 3}}
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "vowels.py").write_text(HALF_VOWELS)
    recipe = tmp_path / "recipe.yaml"
    rewards = {"accuracy": 1.0, f"{tmp_path / 'one' / 'vowels.py'}:vowels": 1.0}
    recipe.write_text(yaml.safe_dump({**data, "rewards": rewards}))
    one = subprocess.run([sys.executable, "-m", "r1", "grpo", str(recipe), "--out", str(tmp_path / "run1")],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    _launch("fsdp.yaml", recipe, tmp_path / "run2", 29624)
    rows = [json.loads(x) for x in (tmp_path / "run2" / "rollouts.jsonl").read_text().splitlines()]
    unequal = 0
    for step in {r["step"] for r in rows}:
        rewards_by_group: dict = {}
        for k, r in enumerate(x for x in rows if x["step"] == step):
            rewards_by_group.setdefault(k // 4, []).append(r["reward"])
        live = [len(set(v)) > 1 for _, v in sorted(rewards_by_group.items())]
        unequal += sum(live[:2]) != sum(live[2:])  # rank 0 holds groups 0-1, rank 1 groups 2-3
    assert unequal >= 1  # the case this test is about did happen
    w1, w2 = _weights(tmp_path / "run1"), _weights(tmp_path / "run2")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)


def test_sharded_run_resumes_from_its_checkpoint(runs, tmp_path):
    """FSDP checkpoints hold full weights and optimizer state (gathered on rank 0); resumed
    after step 1, the run ends where the uninterrupted one ends."""
    import shutil

    import torch

    one, _, _ = runs
    data = {**RECIPE, "train": {**RECIPE["train"], "save_every": 1, "keep_checkpoints": 3}}
    recipe = _recipe(tmp_path, data)
    run = tmp_path / "run"
    _launch("fsdp.yaml", recipe, run, 29622)
    # as if killed right after step 1's checkpoint
    shutil.rmtree(run / "checkpoints" / "step-000002")
    (run / "checkpoints" / "latest").write_text("step-000001")
    shutil.rmtree(run / "model")
    res = _launch("fsdp.yaml", recipe, run, 29623, "--resume")
    assert "resumed from" in res.stdout + res.stderr
    w1, w2 = _weights(one), _weights(run)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)


def test_deepspeed_is_refused_with_a_pointer_to_fsdp(tmp_path):
    recipe = _recipe(tmp_path, RECIPE)
    res = subprocess.run([sys.executable, "-m", "r1", "grpo", str(recipe), "--out", str(tmp_path / "x")],
                         env={**_env(), "ACCELERATE_USE_DEEPSPEED": "true"}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "recipes/accelerate/fsdp.yaml" in res.stderr


def test_uneven_split_is_a_clear_error(tmp_path):
    recipe = _recipe(tmp_path, {**RECIPE, "rollout": {**RECIPE["rollout"], "prompts_per_step": 3}})
    res = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "recipes/accelerate/ddp.yaml"),
         "--num_processes", "2", "--main_process_port", "29618", "-m", "r1", "grpo", str(recipe),
         "--out", str(tmp_path / "run")], env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "prompts_per_step (3) must be a multiple of the number of processes (2)" in res.stderr


SFT_RECIPE = {
    "model": {"name": "tiny", "precision": "fp32"},
    "train": {"max_length": 128, "save_every": 2, "steps": 3, "grad_accum": 2},
    "optim": {"lr": 3.0e-3, "micro_batch_size": 2, "warmup_steps": 0},
    "tracking": {"progress": False},
}


@pytest.mark.parametrize("config, port", [("ddp.yaml", 29630), ("fsdp.yaml", 29631)])
def test_sft_two_processes_match_one(tmp_path, config, port):
    """`r1 sft` under accelerate: each step's rows split over the ranks, the loss normalised
    by the whole step's assistant tokens: the same student as one process trains."""
    import torch

    rows = [{"problem": f"What is {a} + {b}?", "completion": f"<think>\n{a} + {b} = {a + b}\n</think>\n{a + b}"}
            for a in range(6) for b in range(4)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(yaml.safe_dump({**SFT_RECIPE, "data": {"path": str(data)}}))
    one = subprocess.run([sys.executable, "-m", "r1", "sft", str(recipe), "--out", str(tmp_path / "one")],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    res = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "recipes/accelerate" / config),
         "--num_processes", "2", "--main_process_port", str(port), "-m", "r1", "sft", str(recipe),
         "--out", str(tmp_path / "two")], env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in m2] == [r["tokens"] for r in m1] and len(m2) == 3
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4)

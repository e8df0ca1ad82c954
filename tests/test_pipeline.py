"""`r1 pipeline` on the tiny recipe: stages, manifest, report, skip, resume, invalidation."""

import json
import re
from pathlib import Path

import pytest

from r1.config import read_yaml
from r1.data.tasks import load_run
from r1.errors import R1Error
from r1.pipeline.runner import Pipeline

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "r1-pipeline-tiny.yaml"


def _mtime(path: Path) -> int:
    return (path / "model" / "model.safetensors").stat().st_mtime_ns


def run(out, overrides=(), resume=False):
    return Pipeline(read_yaml(RECIPE), out, list(overrides), source=str(RECIPE), progress=False, resume=resume).run()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    return out, run(out)


def test_tiny_pipeline_completes_with_a_manifest_and_a_report(finished):
    out, res = finished
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["stages"]
    assert [s["name"] for s in stages] == ["cold_start", "reasoning_rl", "rejection_sft", "rl_all"]
    assert all(s["status"] == "done" for s in stages)
    for s in stages:
        assert set(s) >= {"input", "input_model", "config", "fingerprint", "output_hash", "versions", "metrics"}
        assert (out / s["name"] / "model" / "config.json").is_file()
        assert (out / s["name"] / "eval" / "summary.json").is_file()
    assert stages[2]["input"] == "base" and stages[3]["input"] == "rejection_sft"
    report = (out / "report.md").read_text()
    assert "| accuracy (pass@1) |" in report and "rl_all" in report and "language consistency" in report
    # every stage's accuracy comes with its standard error over the held-out problems
    acc = next(line for line in report.splitlines() if line.startswith("| accuracy"))
    assert acc.count("±") == 5 and all("pass@1_se" in s["metrics"] for s in stages)
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    # stage 3 sampled the training problems only: none of the held-out problems it is scored on
    held = {json.loads(x)["problem"] for x in (out / "rejection_sft" / "eval" / "samples.jsonl").read_text().splitlines()}
    sampled = {re.findall(r"What is [^?]*\?", json.loads(x)["problem"])[-1]
               for x in (out / "rejection_sft" / "generate" / "samples.jsonl").read_text().splitlines()}
    rc, task = load_run(out / "reasoning_rl")
    train, _ = task.splits(rc.task.train_size, rc.task.heldout_size)
    assert len(held) == 6 and len(sampled) == 8 and not held & sampled
    assert sampled <= {e.question for e in train}
    # stage 3 mixed the general conversations into its SFT data
    mixed = (out / "rejection_sft" / "filter" / "mixed.jsonl").read_text().splitlines()
    assert sum("capital of France" in x for x in mixed) == 1


def test_rerun_finishes_at_once_and_redoes_nothing(finished):
    import time

    out, _ = finished
    stamps = {s: _mtime(out / s) for s in ("cold_start", "reasoning_rl", "rejection_sft", "rl_all")}
    with pytest.raises(R1Error, match="already holds a pipeline run: pass --resume"):
        run(out)
    t0 = time.perf_counter()
    run(out, resume=True)
    assert time.perf_counter() - t0 < 30
    assert {s: _mtime(out / s) for s in stamps} == stamps


def test_a_killed_stage_resumes_and_a_changed_stage_reruns_with_what_follows(tmp_path, monkeypatch):
    from r1.trainers.update import PolicyUpdate

    monkeypatch.chdir(tmp_path)  # nothing depends on the working directory
    out = tmp_path / "run"
    original = PolicyUpdate.update
    calls = {"n": 0}

    def killed_on_second_update(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run dies inside stage 2, after its step-1 checkpoint
        return original(self, *a, **kw)

    monkeypatch.setattr(PolicyUpdate, "update", killed_on_second_update)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["name"], s["status"]) for s in manifest["stages"]] == [("cold_start", "done"), ("reasoning_rl", "running")]
    stage1 = _mtime(out / "cold_start")
    monkeypatch.setattr(PolicyUpdate, "update", original)
    run(out, resume=True)
    assert _mtime(out / "cold_start") == stage1  # stage 1 was not redone
    steps = [json.loads(x)["step"] for x in (out / "reasoning_rl" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # stage 2 resumed from its checkpoint
    before = {s: _mtime(out / s) for s in ("cold_start", "reasoning_rl", "rejection_sft", "rl_all")}
    # change stage 3's config: it and stage 4 run again, stages 1-2 stay
    recipe = read_yaml(RECIPE)
    recipe["stages"][2]["sft"]["optim"]["lr"] = 5.0e-4
    Pipeline(recipe, out, source=str(RECIPE), progress=False, resume=True).run()
    after = {s: _mtime(out / s) for s in before}
    assert after["cold_start"] == before["cold_start"] and after["reasoning_rl"] == before["reasoning_rl"]
    assert after["rejection_sft"] != before["rejection_sft"] and after["rl_all"] != before["rl_all"]


def test_recipe_errors_name_the_problem(tmp_path):
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="stages: missing"):
        Pipeline({"model": "tiny"}, tmp_path)
    with pytest.raises(R1Error, match="stages: List should have at least 1 item"):
        Pipeline({"model": "tiny", "stages": []}, tmp_path)
    with pytest.raises(R1Error, match="stage 'a': kind must be one of sft, distill, grpo \\(got 'dpo'\\)"):
        Pipeline({"stages": [{"name": "a", "kind": "dpo"}]}, tmp_path)
    # every section is typed: a misspelt key anywhere is named, not ignored
    with pytest.raises(R1Error, match="stage 'a': unknown key 'grpoo'"):
        Pipeline({"stages": [{"name": "a", "kind": "grpo", "grpoo": {}}]}, tmp_path)
    with pytest.raises(R1Error, match="unknown key 'eval.sample'"):
        Pipeline({"eval": {"sample": 3}, "stages": [{"name": "a", "kind": "grpo"}]}, tmp_path)
    with pytest.raises(R1Error, match="stages\\[0\\]: name: missing"):
        Pipeline({"stages": [{"kind": "sft"}]}, tmp_path)
    with pytest.raises(R1Error, match="input 'later' is not an earlier stage"):
        Pipeline({"stages": [{"name": "a", "kind": "sft", "input": "later"}]}, tmp_path)


def test_mixture_task_and_the_reward_model_on_general_prompts_only():
    from r1.data.tasks import get_task
    from r1.rewards import registry

    task = get_task("mixture", {"reasoning": {"name": "arithmetic", "params": {"max_value": 9}},
                                "general": str(ROOT / "recipes" / "data" / "general-small.jsonl"),
                                "general_share": 0.25}, seed=0)
    train, held = task.splits(30, 5)
    general = [e for e in train if e.meta.get("general")]
    assert len(train) == 40 and len(general) == 10 and not any(e.meta.get("general") for e in held)
    assert not task.verify("anything", general[0])
    reasoning = next(e for e in train if not e.meta.get("general"))
    assert task.verify(reasoning.answer, reasoning)
    per, _, failures = registry.score(["<think>x</think> <answer>1</answer>"] * 2, [general[0], reasoning], task,
                                      {"reward_model": 1.0, "accuracy": 1.0},
                                      {"reward_model": {"path": "tiny-rm", "only_general": True}})
    assert failures.total == 0 and per["reward_model"][1] is None and per["reward_model"][0] not in (None, 0.0)


@pytest.mark.slow
def test_sigkill_during_stage_2_then_rerun_does_not_redo_stage_1(tmp_path):
    """The acceptance case with a real SIGKILL of the `r1 pipeline` process."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    recipe = read_yaml(RECIPE)
    recipe["stages"][1]["grpo"]["train"] = {"steps": 60, "save_every": 1}  # a long stage 2 to kill
    recipe["stages"][2]["general_data"] = str(ROOT / "recipes" / "data" / "general-small.jsonl")
    recipe["stages"][3]["grpo"]["task"]["params"]["general"] = str(ROOT / "recipes" / "data" / "general-small.jsonl")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "r1.cli.main", "pipeline", str(path), "--out", str(out)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 240
        ckpts = out / "reasoning_rl" / "checkpoints"
        while time.time() < deadline and proc.poll() is None:
            if ckpts.exists() and len(list(ckpts.glob("step-*"))) >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the pipeline ended before stage 2 could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["done", "running"]
    stage1 = _mtime(out / "cold_start")
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _mtime(out / "cold_start") == stage1
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"]) and len(manifest["stages"]) == 4
    steps = [json.loads(x)["step"] for x in (out / "reasoning_rl" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))  # resumed: every step exactly once


def test_every_stage_folder_prompts_a_bare_question_as_the_pipeline_evaluates_it(finished):
    """Each stage's model/ (SFT and distillation stages included) carries a chat template that,
    rendered by plain transformers for the bare held-out problem, gives the ids the pipeline's
    evaluation fed that model: the shared prompt template and the forced <think> opening."""
    from transformers import AutoTokenizer

    from r1.models import load_model

    out, _ = finished
    _, base = load_model("tiny", device="cpu")
    rc, task = load_run(out / "reasoning_rl")
    _, heldout = task.splits(rc.task.train_size, rc.task.heldout_size)
    pipe = Pipeline(read_yaml(RECIPE), out, source=str(RECIPE), progress=False, resume=True)
    shown = {json.loads(x)["problem"] for x in (out / "cold_start" / "eval" / "samples.jsonl").read_text().splitlines()}
    for stage in ("cold_start", "reasoning_rl", "rejection_sft", "rl_all"):
        tok = AutoTokenizer.from_pretrained(out / stage / "model")
        for ex in heldout[:2]:
            bare = tok.apply_chat_template([{"role": "user", "content": ex.question}], add_generation_prompt=True,
                                           tokenize=False)
            assert bare.endswith("<think>\n"), stage
            assert tok(bare, add_special_tokens=False)["input_ids"] == pipe.prompt_for(base).ids(ex.question, base)
            assert ex.question in shown and pipe.prompt_for(base).user_turn(ex.question) in bare

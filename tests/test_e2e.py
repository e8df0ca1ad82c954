"""End to end on the offline tiny model: training changes the weights, logs the reward,
leaves every artefact, survives SIGKILL and resumes."""

import contextlib
import io
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
from r1.rollout.kernels import cpu_packs_bf16
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
                 "plots/reward.png", "plots/entropy.png", "plots/response_length.png", "plots/reflection.png",
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
    assert {"pass@1", "format_rate", "response_length_mean"} <= set(summary["heldout_before"])
    assert {"pass@1", "format_rate", "response_length_mean"} <= set(summary["heldout_after"])
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000002", "step-000003"]
    trained, _ = load_model(str(out / "model"), device="cpu")
    base, _ = load_model("tiny", device="cpu")
    changed = sum(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    assert changed > 0, "training did not change any parameter"
    assert "## Sample completions, before and after" in (out / "report.md").read_text()
    assert not (out / "diagnosis.md").exists()  # the rewards varied: nothing to diagnose


def test_the_saved_model_samples_in_plain_transformers_as_in_r1(tmp_path):
    """model/ carries its generation settings (every EOS id, the eval temperature/top-p), so
    transformers' own `generate` with no stop strings stops where r1's engine stops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from r1.data.prompts import PromptFormat
    from r1.rollout.hf import HFEngine
    from r1.types import SamplingParams

    cfg = tiny_cfg("train.steps=1", "eval.temperature=0.6", "eval.top_p=0.9")
    trainer = GRPOTrainer(cfg, tmp_path / "run")
    trainer.train()
    folder = tmp_path / "run" / "model"
    saved = GenerationConfig.from_pretrained(folder)
    assert sorted(saved.eos_token_id) == sorted(trainer.eos) and saved.do_sample
    assert (saved.temperature, saved.top_p, saved.max_new_tokens) == (0.6, 0.9, cfg.eval.max_new_tokens)
    assert "eos_rate" in json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    prompt = PromptFormat.of(cfg, "the final number")
    engine = HFEngine(model, tok, bf16=False, own_copy=False)
    ids = [prompt.ids(ex.question, tok) for ex in trainer.heldout]
    ours = engine.generate(ids, 1, SamplingParams(max_new_tokens=24, temperature=0.0, stop=()))
    for p, mine in zip(ids, ours.completion_ids):
        theirs = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=24)[0, len(p):].tolist()
        assert theirs == mine  # the same tokens, ended by the same EOS ids (or both at the limit)
    # its chat template prompts a bare question as r1 trained it: the run's template on the user
    # turn, the <think> opening; and r1's own prompt through the saved folder is not doubled
    for ex in trainer.heldout[:3]:
        bare = tok.apply_chat_template([{"role": "user", "content": ex.question}], add_generation_prompt=True,
                                       tokenize=True)
        bare = list(bare["input_ids"] if hasattr(bare, "keys") else bare)
        assert bare == prompt.ids(ex.question, trainer.tokenizer)
        assert prompt.ids(ex.question, tok) == prompt.ids(ex.question, trainer.tokenizer)
    served = PromptFormat.as_sent(tok).render("What is 2 + 3?", tok).text
    assert served == prompt.render("What is 2 + 3?", trainer.tokenizer).text


def test_text_after_the_stop_string_can_only_lose_reward(tmp_path):
    """With stop_grace_tokens the rewards judge the text up to the stop string: a tag written
    after it earns nothing (a run once learnt to add the missing `</think>` there for
    tag_count), and a sample that wrote on, or did not end with EOS, scores 0 on format."""
    from r1.rewards import registry
    from r1.types import Generation

    tr = GRPOTrainer(tiny_cfg("train.steps=1"), tmp_path / "run")
    tr.setup()
    eos = min(tr.eos)
    texts = ["x</think><answer>7</answer>", "x</think><answer>7</answer>\n",
             "<answer>7</answer> </think> </", "x</think><answer>7</answer>", "no stop string"]
    ids = [[5, eos], [5, 6, eos], [5, 6, 7], [5, 6, 7], [5, eos]]
    gen = Generation(completion_ids=ids, logprobs=[[0.0] * len(i) for i in ids], finish_reasons=["stop"] * 5,
                     texts=texts)
    judged, ran_on = tr.judged_texts(gen)
    assert judged[2] == tr.prompt.prefill + "<answer>7</answer>" and judged[1] == tr.prompt.prefill + "x</think><answer>7</answer>"
    assert ran_on == [False, False, True, True, False]  # 3: wrote on; 4: stopped at the string, no EOS
    per, _, _ = registry.score(judged, [tr.train_set[0]] * 5, tr.task, {"format": 1.0, "tag_count": 1.0},
                               ran_on=ran_on)
    assert per["format"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert per["tag_count"][2] == 0.75  # the `</think>` written after `</answer>` does not count
    tr.cfg.rollout.stop_grace_tokens = 0  # the old behaviour: everything judged, nothing ran on
    judged0, ran_on0 = tr.judged_texts(gen)
    assert judged0 == [tr.prompt.prefill + t for t in texts] and not any(ran_on0)


def test_the_heldout_evaluation_judges_as_training_does(tmp_path):
    """The held-out evaluation cuts the text at the stop string like the rewards do: a sample
    that answered, then wrote on (a second, different answer) keeps its first answer's verdict
    but fails the format; one that ended with EOS passes it and counts in `eos_rate`."""
    from r1.eval.heldout import evaluate
    from r1.types import Generation

    tr = GRPOTrainer(tiny_cfg("train.steps=1"), tmp_path / "run")
    tr.setup()
    eos, ex = min(tr.eos), tr.heldout[0]
    right, wrong = ex.answer, str(int(ex.answer) + 1)
    head = ("" if "<think>" in tr.prompt.prefill else "<think>") + "x</think>"
    texts = [f"{head}<answer>{right}</answer>", f"{head}<answer>{right}</answer> <answer>{wrong}</answer>",
             f"{head}<answer>{wrong}</answer>"]
    ids = [[5, eos], [5, 6, 7], [5, eos]]

    class Fixed:
        eos_ids = tr.eos

        def generate(self, prompt_ids, n, params):
            assert params.stop_grace == 4 and n == 3
            return Generation(completion_ids=ids, logprobs=[[0.0] * len(i) for i in ids],
                              finish_reasons=["stop", "length", "stop"], texts=texts)

    kw = dict(samples=3, temperature=1.0, top_p=1.0, max_new_tokens=8, stop=("</answer>",), seed=0)
    m = evaluate(Fixed(), tr.prompt, tr.tokenizer, tr.task, [ex], stop_grace=4, **kw)
    rows = m["rows"]
    assert [r["correct"] for r in rows] == [True, True, False]
    assert [r["format"] for r in rows] == [True, False, True]
    assert [r["eos"] for r in rows] == [True, False, True] and m["eos_rate"] == 2 / 3
    assert rows[1]["completion"].endswith(f"<answer>{wrong}</answer>")  # the row keeps what it wrote


def test_curriculum_moves_the_prompts_from_easy_to_hard(tmp_path):
    """task.curriculum: the training prompts of step s come from level s * levels // steps
    (arithmetic: the number of operands), the held-out set stays the whole mix."""
    from r1.errors import R1Error

    base = ["task.params.min_terms=2", "task.params.terms=4", "task.train_size=60", "rollout.max_new_tokens=4",
            "eval.max_new_tokens=4", "train.steps=4"]
    trainer = GRPOTrainer(tiny_cfg(*base, "task.curriculum={steps: 3}"), tmp_path / "run")
    trainer.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["curriculum_level"] for r in rows] == [0, 1, 2, 2]
    terms = {ex.id: ex.meta["difficulty"] for ex in trainer.train_set}
    seen = {}
    for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines():
        r = json.loads(line)
        seen.setdefault(r["step"], set()).add(terms[r["id"]])
    assert seen == {1: {2}, 2: {3}, 3: {4}, 4: {4}}
    assert {ex.meta["difficulty"] for ex in trainer.heldout} == {2, 3, 4}
    cumulative = GRPOTrainer(tiny_cfg(*base, "task.curriculum={steps: 3, cumulative: true}"), tmp_path / "c")
    cumulative.setup()
    assert [len(level) for level in cumulative.levels] == sorted(len(level) for level in cumulative.levels)
    assert len(cumulative.levels[-1]) == 60
    with pytest.raises(R1Error, match="no numeric meta field 'level'"):
        GRPOTrainer(tiny_cfg(*base, "task.curriculum={steps: 3, key: level}"), tmp_path / "bad").setup()


def test_a_run_directory_is_never_overwritten(tmp_path):
    from r1.errors import R1Error

    cfg = tiny_cfg("train.steps=1")
    GRPOTrainer(cfg, tmp_path / "run").train()
    with pytest.raises(R1Error, match="already holds a run"):
        GRPOTrainer(cfg, tmp_path / "run")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, varied_reward, monkeypatch):
    """A run killed in its third step resumes from the step-2 checkpoint and ends with the
    weights of a run never stopped (with a reward that varies, so that every step trains)."""
    sets = ("train.steps=4", "train.save_every=2", f"rewards.{varied_reward}=1.0")
    GRPOTrainer(tiny_cfg(*sets), tmp_path / "a").train()
    real = GRPOTrainer.step
    monkeypatch.setattr(GRPOTrainer, "step", lambda self, step: (_ for _ in ()).throw(KeyboardInterrupt)
                        if step == 2 else real(self, step))
    with pytest.raises(KeyboardInterrupt):
        GRPOTrainer(tiny_cfg(*sets), tmp_path / "b").train()
    monkeypatch.setattr(GRPOTrainer, "step", real)
    GRPOTrainer(tiny_cfg(*sets), tmp_path / "b", resume=True).train()
    grads = [json.loads(x)["grad_norm"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(g > 0 for g in grads)  # every step moved the weights
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-000004" / "model.pt")
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-000004" / "model.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_resumed_run_keeps_where_entropy_control_had_moved_the_temperature(tmp_path, varied_reward, monkeypatch):
    """Entropy control's state is in the checkpoints: a run killed in its third step (after
    the step-2 checkpoint) and resumed samples steps 3 and 4 at the temperatures an
    uninterrupted run does, and ends with the same weights."""
    sets = ("train.steps=4", "train.save_every=2", f"rewards.{varied_reward}=1.0", "entropy.control=temperature",
            "entropy.target=0.5", "entropy.temperature_min=0.1")
    GRPOTrainer(tiny_cfg(*sets), tmp_path / "a").train()
    real = GRPOTrainer.step

    def killed_at_step_3(self, step):
        if step == 2:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(GRPOTrainer, "step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        GRPOTrainer(tiny_cfg(*sets), tmp_path / "b").train()
    monkeypatch.setattr(GRPOTrainer, "step", real)
    GRPOTrainer(tiny_cfg(*sets), tmp_path / "b", resume=True).train()

    def temperatures(run):
        return [json.loads(x)["temperature"] for x in (run / "metrics.jsonl").read_text().splitlines()]

    whole, resumed = temperatures(tmp_path / "a"), temperatures(tmp_path / "b")
    assert len(whole) == 4 and whole[0] == 1.0 and len(set(whole)) == 4  # it moved every step
    assert resumed == whole
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-000004" / "model.pt")
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-000004" / "model.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name


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
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="disk full.*step-000001 is intact: resume from it"):
        ckpt.save_checkpoint(root, 2, model, opt, sched, {})
    assert ckpt.latest_checkpoint(root).name == "step-000001"
    assert not (root / "step-000002").exists() and not (root / ".tmp-step-000002").exists()


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


def _wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (LevelDB's log format: 32 KiB blocks of
    chunks, each with a 7-byte header: checksum, length, type full/first/middle/last)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending, out = path.read_bytes(), 7, b"", []  # 7: the ':W&B' file header
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending + chunk if kind == 4 else chunk)
            out.append(rec)
        pending = chunk if kind == 2 else pending + chunk if kind == 3 else b""
    return out


def test_wandb_offline_run_with_the_config_and_metrics_continued_on_resume(tmp_path, monkeypatch):
    """tracking.wandb in W&B's offline mode: the run's folder holds the W&B run with the
    config and every step's metrics; a resumed run logs into the same W&B run."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    wb = ["tracking.wandb=true", "tracking.wandb_mode=offline", "tracking.wandb_project=r1-test", "train.save_every=1"]
    GRPOTrainer(tiny_cfg("train.steps=2", *wb), run).train()
    run_id = (run / "wandb_run_id").read_text().strip()
    GRPOTrainer(tiny_cfg("train.steps=3", *wb), run, resume=True).train()
    assert (run / "wandb_run_id").read_text().strip() == run_id
    files = sorted((run / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"))
    assert len(files) == 2  # one per process that ran, one W&B run id

    steps, config = [], {}
    for f in files:
        for rec in _wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {item.key or "/".join(item.nested_key): item.value_json for item in rec.history.item}
                steps.append(int(row["_step"]))
                assert "reward" in row and "time/step" in row
            elif kind == "run":
                config.update({item.key: item.value_json for item in rec.run.config.update})
    assert sorted(steps) == [1, 2, 3]
    assert '"r1-test"' in config["tracking"] and "group_size" in config["rollout"]


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    from r1.errors import R1Error

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(R1Error, match="pip install wandb"):
        GRPOTrainer(tiny_cfg("train.steps=1", "tracking.wandb=true"), tmp_path / "run").train()


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
        rollout.rows = list(range(rollout.size))
        tr.updater.ref_logprobs(rollout)
        tr.updater.update(rollout)
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
    assert all(torch.equal(a, b.cpu()) for a, b in zip(fresh.parameters(), tr.model.parameters()))
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


def test_mask_truncated_leaves_cut_completions_out_of_the_loss(tmp_path, varied_reward):
    """algorithm.mask_truncated: completions cut at max_new_tokens enter neither the rows
    nor (with whole-group micro-batches over a shared prompt) the loss's mask."""
    cfg = tiny_cfg("train.steps=1", f"rewards.{varied_reward}=1.0", "rollout.max_new_tokens=6",
                   "algorithm.mask_truncated=true")
    tr = GRPOTrainer(cfg, tmp_path / "run")
    tr.setup()
    rollout = tr.generate(0)
    tr.score(rollout)
    tr.advantage(rollout)
    fins = rollout.generation.finish_reasons
    tr.select_rows(rollout)
    assert "length" in fins and all(fins[i] != "length" for i in rollout.rows)
    assert len(rollout.rows) < sum(rollout.keep)
    # every row truncated: nothing to learn from, no step (the update with them unmasked moves)
    rollout.generation.finish_reasons = ["length"] * rollout.size
    tr.select_rows(rollout)
    assert rollout.rows == []
    tr.updater.update(rollout)
    assert rollout.update["grad_norm"] == 0.0 and not rollout.stepped


def test_rows_left_out_of_whole_group_micro_batches_match_row_micro_batches(tmp_path, varied_reward):
    """With a shared prompt prefix the micro-batches hold whole groups; the rows left out
    (truncated, masked) must contribute nothing: the update equals the one computed from
    row micro-batches without the shared prefix (fp32)."""
    results = []
    rollout = None
    for share in ("true", "false"):
        cfg = tiny_cfg("train.steps=1", f"rewards.{varied_reward}=1.0", "rollout.max_new_tokens=8",
                       "algorithm.mask_truncated=true", "model.precision=fp32", f"train.share_prompt_prefix={share}")
        tr = GRPOTrainer(cfg, tmp_path / share)
        tr.setup()
        if rollout is None:
            rollout = tr.generate(0)
            tr.score(rollout)
            tr.advantage(rollout)
            # a third of the samples marked cut at the limit (the tiny model is cut almost always)
            rollout.generation.finish_reasons = ["length" if i % 3 == 0 else "stop" for i in range(rollout.size)]
        tr.select_rows(rollout)
        assert 0 < len(rollout.rows) < rollout.size
        tr.updater.update(rollout)
        results.append((rollout.update["loss"], rollout.update["grad_norm"]))
    (loss_a, norm_a), (loss_b, norm_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-4, abs=1e-7) and norm_a == pytest.approx(norm_b, rel=1e-4)


@pytest.mark.parametrize("mode", ["exclude", "zero"])
def test_unscored_samples_are_left_out_of_their_group_by_default(tmp_path, mode):
    """A reward that returns None for some samples: by default they are out of their
    group's statistics and of the loss (TRL's semantics); `unscored: zero` counts them 0."""
    from r1.rewards import registry

    @registry.register("test_half_none")
    def half_none(completions, examples, task):
        return [None if i % 4 == 0 else (i % 3) / 2 for i in range(len(completions))]

    try:
        cfg = tiny_cfg("train.steps=1", "rewards.test_half_none=1.0", f"algorithm.unscored={mode}",
                       *(f"rewards.{name}=0" for name in tiny_cfg().rewards))  # only this reward weighs
        tr = GRPOTrainer(cfg, tmp_path / mode)
        tr.setup()
        rollout = tr.generate(0)
        tr.score(rollout)
        tr.advantage(rollout)
        tr.select_rows(rollout)
        rows, g = rollout.rows, rollout.group_size
        unscored = [i for i in range(rollout.size) if i % 4 == 0]
        if mode == "exclude":
            assert [i for i, s in enumerate(rollout.scored) if not s] == unscored
            assert all(rollout.advantages[i] == 0.0 and i not in rows for i in unscored)
            for k in range(rollout.size // g):  # advantages of the scored: normalised among themselves
                idx = [i for i in range(k * g, k * g + g) if i not in unscored]
                vals = torch.tensor([rollout.total_reward[i] for i in idx])
                expect = (vals - vals.mean()) / (vals.std() + 1e-6)
                assert torch.allclose(torch.tensor([rollout.advantages[i] for i in idx]), expect, atol=1e-5)
        else:
            assert all(rollout.scored) and all(rollout.total_reward[i] == 0.0 for i in unscored)
            assert any(i in rows for i in unscored)
    finally:
        registry.REWARDS.pop("test_half_none")


def test_dynamic_sampling_refills_until_the_step_has_its_varied_groups(tmp_path):
    """A reward with variance for only some prompts: without refill the step trains on
    fewer groups than prompts_per_step; with dynamic sampling it samples refill rounds
    until it holds exactly prompts_per_step varied groups."""
    from r1.rewards import registry

    @registry.register("test_some_prompts")
    def some_prompts(completions, examples, task):  # varied only for even answers
        return [float(int(ex.answer) % 2 == 0) * (i % 2) for i, ex in enumerate(examples)]

    try:
        base = ["train.steps=3", "rewards.test_some_prompts=1.0", "rollout.prompts_per_step=4",
                *(f"rewards.{name}=0" for name in tiny_cfg().rewards)]
        runs = {}
        for dyn in ("false", "true"):
            GRPOTrainer(tiny_cfg(*base, f"algorithm.dynamic_sampling={dyn}", "algorithm.max_refill_prompts=32"),
                        tmp_path / dyn).train()
            runs[dyn] = [json.loads(x) for x in (tmp_path / dyn / "metrics.jsonl").read_text().splitlines()]
        assert any(r["groups_trained"] < 4 for r in runs["false"]) and all(r["refill_rounds"] == 0 for r in runs["false"])
        assert all(r["groups_trained"] == 4 for r in runs["true"])
        assert any(r["refill_rounds"] > 0 for r in runs["true"])
        # bounded: no refill budget, no refill
        GRPOTrainer(tiny_cfg(*base, "algorithm.dynamic_sampling=true", "algorithm.max_refill_prompts=0"),
                    tmp_path / "nobudget").train()
        rows = [json.loads(x) for x in (tmp_path / "nobudget" / "metrics.jsonl").read_text().splitlines()]
        assert all(r["refill_rounds"] == 0 for r in rows)
    finally:
        registry.REWARDS.pop("test_some_prompts")


@pytest.mark.parametrize("case", ["truncated", "format", "runs_on", "unverified", "too_hard"])
def test_flat_reward_is_diagnosed_with_its_cause(tmp_path, case):
    """'Why is my reward zero?': three steps without a signal are diagnosed from what was
    sampled, printed, and written to diagnosis.md and report.md with the keys to change."""
    from r1.rewards import registry

    def fake(text):  # every completion replaced by `text`, so the cause is known
        def patch(tr):
            real = tr.generate

            def generate(step, refill=0):
                ro = real(step, refill)
                ro.generation.texts = [text.removeprefix("<think>")] * ro.size  # the prefill opens it
                ro.generation.completion_ids = [[5, 6, min(tr.eos)]] * ro.size  # ended with EOS
                ro.completions, ro.ran_on = tr.judged_texts(ro.generation)
                return ro
            tr.generate = generate
        return patch

    @registry.register("test_flat")
    def flat(completions, examples, task):
        return [0.0] * len(completions)

    overrides = {"truncated": ["rollout.max_new_tokens=4"],
                 "format": [], "runs_on": [], "unverified": [], "too_hard": []}[case]
    patch = {"truncated": None, "format": fake("the answer is 7"),
             "runs_on": fake("<think>x</think><answer>7</answer>\nProblem: What is 2 + 2?"),
             "unverified": fake("<think>x</think><answer>-12345</answer>"),
             "too_hard": fake("<think>x</think><answer>-12345</answer>")}[case]
    try:
        cfg = tiny_cfg("train.steps=3", "rewards.test_flat=1.0", *overrides,
                       *(f"rewards.{name}=0" for name in tiny_cfg().rewards))
        tr = GRPOTrainer(cfg, tmp_path / case)
        if patch:
            patch(tr)
        tr.train()
    finally:
        registry.REWARDS.pop("test_flat")
    text = (tmp_path / case / "diagnosis.md").read_text()
    assert text in (tmp_path / case / "report.md").read_text()
    expect = {"truncated": ("cut at max_new_tokens (4)", "`rollout.max_new_tokens`"),
              "format": ("the format never matched", "`rewards.tag_count"),
              "runs_on": ("went on writing after it", "`rollout.stop_grace_tokens", "Problem: What is 2 + 2?"),
              "unverified": ("none was verified", "gold `"),
              "too_hard": ("too hard", "`rollout.group_size")}[case]
    assert all(e in text for e in expect), text
    if case == "format":
        assert "the answer is 7" in text  # the closest completion is shown


def test_report_shows_the_signature_analytics(tmp_path, varied_reward):
    """The report's R1-Zero analytics: accuracy and length on one figure, accuracy by
    response-length bucket (a table too), one held-out problem at the start, middle, end."""
    out = tmp_path / "run"
    GRPOTrainer(tiny_cfg("train.steps=3", "train.eval_every=1", f"rewards.{varied_reward}=1.0"), out).train()
    for name in ("signature.png", "accuracy_by_length.png", "reflection.png"):
        assert (out / "plots" / name).stat().st_size > 5000, name
    report = (out / "report.md").read_text()
    assert "![accuracy and response length](plots/signature.png)" in report
    lengths = [json.loads(x)["response_length_mean"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    sig = json.loads((out / "summary.json").read_text())["length_signature"]
    rolling = [sum(lengths[max(0, i - 4):i + 1]) / len(lengths[max(0, i - 4):i + 1]) for i in range(len(lengths))]
    assert sig["low"] == pytest.approx(min(rolling)) and sig["last_tenth"] == pytest.approx(lengths[-1])
    assert f"**{sig['ratio']:.2f}×** its low" in report
    table = report.split("## Accuracy by response length")[1].split("\n\n")[1].splitlines()
    assert table[0].startswith("| evaluation | tokens |") and sum(r.startswith("| before |") for r in table) >= 2
    through = report.split("## One held-out problem through training: ")[1]
    assert [t for t in ("- before (", "- step000002 (", "- after (") if t in through] == \
        ["- before (", "- step000002 (", "- after ("]


@pytest.mark.skipif(not cpu_packs_bf16(),
                    reason="no oneDNN bf16 packing on this CPU (AVX-512 or AVX-NE-CONVERT): nothing to re-pack")
def test_bf16_sampling_shares_the_compute_copy_and_follows_every_update(tmp_path, varied_reward, monkeypatch):
    """precision bf16: the HF engine samples with the bf16 compute copy's own tensors (no third
    copy of the weights) and re-packs them after each update, so its log-probs stay those of
    the trainer (mismatch 0 to ~1e-3) while a large learning rate moves the weights; without the
    re-pack (the engine's sync and release switched off: its packed copies stay those of the
    first step) the mismatch grows."""
    from r1.rollout.hf import HFEngine

    def run(name):
        cfg = tiny_cfg("train.steps=3", f"rewards.{varied_reward}=1.0", "model.precision=bf16", "optim.lr=3e-3",
                       "optim.warmup_steps=0")
        tr = GRPOTrainer(cfg, tmp_path / name)
        tr.train()
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return tr, [r["logprob_mismatch_mean"] for r in rows]

    tr, synced = run("synced")
    engine_ptrs = {p.data_ptr() for p in tr.engine.model.parameters()}
    assert engine_ptrs == {p.data_ptr() for p in tr.policy.compute_model.parameters()}
    assert engine_ptrs.isdisjoint(p.data_ptr() for p in tr.policy.model.parameters())
    assert max(synced) < 0.02
    monkeypatch.setattr(HFEngine, "sync_weights", lambda self, model: None)
    monkeypatch.setattr(HFEngine, "release", lambda self: None)
    _, stale = run("stale")
    print("mismatch synced", synced, "stale", stale)
    assert stale[2] > 3 * synced[2], (synced, stale)


@pytest.mark.parametrize("clip", [1.0, 1e-4, 0.0])
def test_the_sliced_optimizer_step_equals_the_whole_one(clip):
    """precision bf16, one backward per step: `Policy.step` takes the gradients from the bf16
    compute copy a slice at a time (no whole fp32 copy); the grad norm, the clipping (off, not
    binding, binding) and the AdamW update are those of the plain step, bit for bit."""
    from r1.trainers.policy import Policy

    cfg = tiny_cfg("model.precision=bf16", f"optim.grad_clip={clip}", "optim.lr=1e-2", "optim.warmup_steps=0")
    policies = [Policy(cfg.model, cfg.optim, 10, "cpu") for _ in range(2)]
    ids = torch.randint(3, 200, (4, 12))
    norms = []
    for last, p in zip((False, True), policies):
        for _ in range(2):  # two steps: AdamW's moments and step counts matter from the second on
            p.compute_model(input_ids=ids, labels=ids).loss.backward()
            p.accumulate_grads(last=last)
            assert all(w.grad is None for w in p.compute_model.parameters()) != last
            if last:
                norms.append(p._sliced_step(slice_bytes=4096))  # many slices
            else:
                norms.append(p.step())
    assert norms[:2] == norms[2:]
    for a, b in zip(policies[0].model.parameters(), policies[1].model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(policies[0].compute_model.parameters(), policies[1].compute_model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("asked", [True, False])
def test_freed_tensors_leave_the_resident_set_when_asked(asked):
    """`allocator.return_freed_memory` (called by every trainer's Policy; on with
    `R1_RETURN_FREED_MEMORY=1`): 512 MB of 8 MB tensors freed between live small ones leave the
    resident set. (With glibc's defaults they usually stay in it, its dynamic mmap threshold having
    risen past 8 MB, but not always: measured 733 → 733 MB in some runs and 733 → 246 MB in
    others on the same build, with the heap's layout; so only the switch itself is checked then.)"""
    env = {k: v for k, v in os.environ.items() if k != "R1_RETURN_FREED_MEMORY"}
    env.update({"R1_RETURN_FREED_MEMORY": "1"} if asked else {})
    res = subprocess.run([sys.executable, str(Path(__file__).parent / "alloc_probe.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    on, before, after = res.stdout.split()
    assert on == str(asked) and int(before) > 600
    if asked:
        assert int(after) < int(before) - 400, res.stdout


def test_the_model_card_holds_the_figures_of_the_run_that_wrote_it(tmp_path):
    """model/README.md: Hugging Face front matter, the run's held-out figures before and after
    (from its summary.json, with their standard errors) and the prompt as the saved chat
    template renders it."""
    import yaml

    cfg = tiny_cfg("train.steps=1")
    GRPOTrainer(cfg, tmp_path / "run").train()
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "transformers" and "grpo" in front["tags"]
    for name in ("before", "after"):
        h = summary[f"heldout_{name}"]
        row = f"| {name} training | {100 * h['pass@1']:.1f}% ± {100 * h['pass@1_se']:.1f} |"
        assert row in card, row
    assert "<think>" in card.split("```")[1]  # the example prompt, opened as training did
    snippet = card.split("```python\n")[1].split("```")[0].replace("PATH", str(tmp_path / "run" / "model"))
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(snippet.replace("max_new_tokens=128", "max_new_tokens=4"), {})  # the card's own code runs
    assert shown.getvalue().endswith("\n")  # it printed the decoded answer


def test_serving_the_model_folder_answers_as_serving_the_run(tmp_path):
    """`r1 serve --model RUN/model` (no run directory: the folder's chat template carries the
    prompt) answers every request as `r1 serve --model RUN` does: the same prompt tokens and the
    same greedy text, for a bare question, a system message and a conversation."""
    import openai

    from r1.config import ServeConfig
    from r1.serve.launch import BackgroundServer, build_app

    GRPOTrainer(tiny_cfg("train.steps=1"), tmp_path / "run").train()
    chats = [[{"role": "user", "content": "What is 4 + 5?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
             [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
              {"role": "user", "content": "What is 7 - 3?"}]]
    answers = []
    for spec in (tmp_path / "run", tmp_path / "run" / "model"):
        app, engine, name = build_app(ServeConfig(model=str(spec), served_model_name="m", device="cpu",
                                                  precision="fp32"))
        with BackgroundServer(app, engine=engine) as srv:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
            replies = [client.chat.completions.create(model="m", messages=m, temperature=0, max_tokens=12, seed=1)
                       for m in chats]
            answers.append([(r.usage.prompt_tokens, r.choices[0].message.content,
                             getattr(r.choices[0].message, "reasoning_content", None)) for r in replies])
    assert answers[0] == answers[1]
    assert all(n > 20 for n, _, _ in answers[0])  # the run's prompt template was applied

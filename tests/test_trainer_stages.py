"""The GRPO trainer's stages with a fake engine: scripted completions in, so that each path
(kept and dropped groups, a step without signal, held-out evaluations during training) is
checked exactly and in seconds, without sampling from a model."""

from __future__ import annotations

import json

import pytest
import torch

from r1.config import build_config, read_yaml
from r1.presets import preset_path
from r1.rollout.base import RolloutEngine
from r1.trainers.grpo import GRPOTrainer
from r1.types import Generation


class FakeEngine:
    """Completions from `script(call, question, j)`: the j-th sample of a prompt; each text is
    tokenised and ends with EOS; log-probs 0. Records the weight syncs and releases."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script = tokenizer, script
        self.eos_ids = {tokenizer.eos_token_id}
        self.calls, self.syncs = 0, 0
        self.events: list[str] = []

    def generate(self, prompt_ids, n, params) -> Generation:
        texts = []
        for ids in prompt_ids:
            question = self.tokenizer.decode(ids).split("What is")[-1].split("?")[0]
            texts += [self.script(self.calls, question, j) for j in range(n)]
        self.calls += 1
        self.events.append("generate")
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
               for t in texts]
        return Generation(completion_ids=ids, logprobs=[[0.0] * len(i) for i in ids],
                          finish_reasons=["stop"] * len(ids), texts=texts)

    def sync_weights(self, weights) -> None:
        self.syncs += 1
        self.events.append("sync")

    def release(self) -> None:
        self.events.append("release")


def right(question: str) -> str:
    return f"x</think><answer>{eval(question)}</answer>"  # the tiny task's sums: digits and +


def half_right(call, q, j) -> str:
    """Every group varied: odd samples right, even ones without an answer."""
    return right(q) if j % 2 else "no answer"


def trainer(tmp_path, script, *overrides) -> tuple[GRPOTrainer, FakeEngine]:
    cfg = build_config(read_yaml(preset_path("tiny")), ["tracking.progress=false", "train.diagnose_after=0",
                                                        *overrides])
    tr = GRPOTrainer(cfg, tmp_path / "run")
    tr.setup()
    tr.engine = FakeEngine(tr.tokenizer, script)
    assert isinstance(tr.engine, RolloutEngine)
    return tr, tr.engine


def test_a_step_without_signal_trains_nothing_and_says_so(tmp_path):
    """Every group all right: no row enters the loss, the optimizer does not step, the engine
    is not re-synced, the schedule still advances, and the metrics say why."""
    tr, engine = trainer(tmp_path, lambda call, q, j: right(q))
    lr0 = tr.scheduler.get_last_lr()[0]
    before = [p.detach().clone() for p in tr.model.parameters()]
    ro = tr.step(0)
    assert ro.keep == [False] * ro.size and ro.rows == [] and not ro.stepped
    assert ro.update["grad_norm"] == 0.0 and engine.syncs == 0
    assert all((a == b).all() for a, b in zip(before, tr.model.parameters()))
    assert tr.scheduler.get_last_lr()[0] != lr0
    from r1.trainers.steps import step_metrics

    row = step_metrics(1, ro, tr.task, tr.eos, 0.0, None)
    assert row["accuracy"] == 1.0 and row["zero_variance_groups"] == ro.size // ro.group_size
    assert row["groups_trained"] == 0 and set(ro.timings) >= {"generate", "score", "update"}


def test_varied_groups_train_and_uniform_ones_are_dropped_unless_asked(tmp_path):
    """Prompt 0's samples alternate right/wrong (varied); the other prompts' are all right.
    skip_zero_variance (default) keeps only prompt 0's rows; off, every row is in the loss."""

    def script(call, q, j):
        return right(q) if q != first[0] or j % 2 else "no answer"

    first: list[str] = []
    for skip in (True, False):
        tr, engine = trainer(tmp_path / str(skip), script, f"algorithm.skip_zero_variance={str(skip).lower()}")
        first[:] = [tr.step_examples(0)[0].question.split("What is")[-1].split("?")[0]]
        ro = tr.step(0)
        g = ro.group_size
        expect = list(range(g)) if skip else list(range(ro.size))
        assert ro.rows == expect and ro.stepped and engine.syncs == 1
        assert engine.events == ["generate", "release", "sync"]  # sampling's memory freed for the update
        assert all(ro.advantages[i] == 0.0 for i in range(g, ro.size))  # uniform groups carry no advantage
        assert len({round(a, 6) for a in ro.advantages[:g]}) == 2


def test_held_out_evaluations_during_training(tmp_path):
    """train.eval_every: held-out evaluations at those steps (not again at the end), in the
    metrics row, the history and eval/; the summary's before/after come from the same runs."""
    tr, _ = trainer(tmp_path, lambda call, q, j: right(q) if (call + j) % 2 else "no answer",
                    "train.steps=4", "train.eval_every=2", "task.heldout_size=4", "eval.samples=1")
    tr.setup = lambda: None  # already set up, with the fake engine
    summary = tr.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert "heldout/pass@1" in rows[1] and "heldout/pass@1" not in rows[2]
    assert sorted(p.name for p in (tmp_path / "run" / "eval").glob("heldout_*.jsonl")) == [
        "heldout_after.jsonl", "heldout_before.jsonl", "heldout_step000002.jsonl"]
    assert [h["step"] for h in summary["heldout_history"]] == [0, 2, 4]
    assert summary["heldout_after"]["pass@1"] == pytest.approx(summary["heldout_history"][-1]["pass@1"])


def test_one_process_steps_on_the_bf16_gradients_without_an_fp32_copy(tmp_path, monkeypatch):
    """precision bf16, one process, one backward: the masters never hold a whole fp32 copy of
    the gradients (0.54 GB for a 135M model); the optimizer takes them from the compute copy a
    slice at a time. (A data-parallel run sums the gradients first, so it takes the full path.)"""
    from r1.trainers.policy import Policy

    tr, _ = trainer(tmp_path, half_right, "model.precision=bf16")
    assert tr.policy.grad_reduce is None and tr.policy.compute_model is not tr.policy.model
    seen = []
    sliced = Policy._sliced_step
    monkeypatch.setattr(Policy, "_sliced_step", lambda self, *a, **k: (
        seen.append([m.grad is None for m in self.model.parameters()]), sliced(self, *a, **k))[1])
    before = [p.detach().clone() for p in tr.model.parameters()]
    ro = tr.step(0)
    assert ro.stepped and len(seen) == 1 and all(seen[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))


def test_the_reference_paged_from_disk_gives_the_same_reference_logprobs(tmp_path, monkeypatch):
    """model.reference_on_disk: the reference weights live in an unlinked file mapping (no file
    left in the run folder), and the reference log-probs of a step are the same numbers.
    model.low_memory adds gradient checkpointing (so no shared prompt pass) and asks the
    allocator to return freed memory (recorded here: it would switch it on for the whole
    test process)."""
    import r1.trainers.policy as policy

    asked = []
    monkeypatch.setattr(policy, "return_freed_memory", lambda force=False: asked.append(force))

    refs = []
    for name, sets in (("default", []), ("disk", ["model.reference_on_disk=true"]), ("low", ["model.low_memory=true"])):
        asked.clear()
        tr, _ = trainer(tmp_path / name, half_right, "algorithm.beta=0.04", *sets)
        assert (tr.ref_pages is not None) == (name != "default")
        assert asked == [name == "low"] and tr.share_prefix == (name != "low")
        cm = tr.policy.compute_model  # the property was renamed in transformers 5
        on = cm.is_activation_checkpointing if hasattr(type(cm), "is_activation_checkpointing") \
            else cm.is_gradient_checkpointing
        assert on == (name == "low")
        ro = tr.step(0)
        assert ro.ref and ro.stepped
        refs.append(ro.ref)
        assert not list((tmp_path / name / "run").glob(".paged-weights-*"))
    assert refs[0].keys() == refs[1].keys() == refs[2].keys()
    assert all(torch.equal(refs[0][i], refs[1][i]) for i in refs[0])  # paging alone: the same bits
    for i in refs[0]:  # low_memory: each sequence's prompt in its own pass, the same up to bf16 rounding
        torch.testing.assert_close(refs[0][i], refs[2][i], rtol=1e-4, atol=1e-4)


def test_the_reference_on_a_tmpfs_says_it_saves_nothing():
    """A run folder on a tmpfs: the reference's pages would stay in memory there; the trainer
    says so (a warning naming the folder) and still trains with the same numbers."""
    import shutil
    import tempfile
    from pathlib import Path

    from r1.allocator import memory_filesystem

    if not Path("/dev/shm").is_dir() or memory_filesystem(Path("/dev/shm")) is None:
        pytest.skip("no tmpfs at /dev/shm here")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        with pytest.warns(UserWarning, match="is on a tmpfs"):
            tr, _ = trainer(folder, lambda call, q, j: right(q), "algorithm.beta=0.04",
                            "model.reference_on_disk=true")
        assert tr.ref_pages is not None and not list((folder / "run").glob(".paged-weights-*"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- entropy control in the trainer: each countermeasure changes the loss or the sampling -----

class RecordingEngine(FakeEngine):
    """Also records each call's (rows per prompt, temperature)."""

    def __init__(self, tokenizer, script):
        super().__init__(tokenizer, script)
        self.temperatures: list[tuple[int, float]] = []

    def generate(self, prompt_ids, n, params) -> Generation:
        self.temperatures.append((n, params.temperature))
        return super().generate(prompt_ids, n, params)


def recording_trainer(tmp_path, *overrides) -> tuple[GRPOTrainer, RecordingEngine]:
    tr, _ = trainer(tmp_path, half_right, *overrides)
    tr.engine = RecordingEngine(tr.tokenizer, half_right)
    return tr, tr.engine


def test_the_entropy_bonus_subtracts_coef_times_the_entropy_from_the_loss(tmp_path):
    """The same step with entropy.coef 0 and 0.1: the loss falls by exactly 0.1 × the step's
    token-mean entropy, and the weights move differently."""
    steps = {}
    for coef in (0.0, 0.1):
        tr, _ = recording_trainer(tmp_path / str(coef), f"entropy.coef={coef}", "optim.micro_batch_size=64")
        ro = tr.step(0)
        assert ro.entropy_coef == coef
        steps[coef] = (ro.update, [p.detach().clone() for p in tr.model.parameters()])
    plain, bonus = steps[0.0][0], steps[0.1][0]
    assert plain["entropy"] == pytest.approx(bonus["entropy"], rel=1e-6) and plain["entropy"] > 0.5
    assert bonus["loss"] == pytest.approx(plain["loss"] - 0.1 * plain["entropy"], rel=1e-4, abs=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(steps[0.0][1], steps[0.1][1]))


def test_the_adaptive_bonus_moves_its_coefficient_by_the_measured_entropy(tmp_path):
    """control bonus: below its target the coefficient rises by coef_delta a step (and the next
    step's loss uses the new value); above it, it falls."""
    tr, _ = recording_trainer(tmp_path / "low", "entropy.control=bonus", "entropy.target=100",
                              "entropy.coef=0.01", "entropy.coef_delta=0.02")
    first = tr.step(0)
    assert first.entropy_coef == 0.01 and tr.control.coef == pytest.approx(0.03)
    assert tr.step(1).entropy_coef == pytest.approx(0.03)
    tr, _ = recording_trainer(tmp_path / "high", "entropy.control=bonus", "entropy.target=0.001",
                              "entropy.coef=0.01", "entropy.coef_delta=0.02")
    tr.step(0)
    assert tr.control.coef == 0.0


def test_the_temperature_controller_moves_sampling_and_the_loss_to_the_new_temperature(tmp_path, monkeypatch):
    """control temperature: the tiny model's entropy (several nats) is far above a 0.5 target,
    so the next step samples cooler, by gain·log(target / H); that step's loss takes its
    log-probs at the temperature it sampled at. Switched off, the temperature stays."""
    import r1.trainers.update as update

    seen = []
    real = update.shared_prefix_logprobs

    def spy(model, prompts, completions, group, pad_id, temperature, *args, **kwargs):
        seen.append(temperature)
        return real(model, prompts, completions, group, pad_id, temperature, *args, **kwargs)

    monkeypatch.setattr(update, "shared_prefix_logprobs", spy)
    tr, engine = recording_trainer(tmp_path / "on", "entropy.control=temperature", "entropy.target=0.5",
                                   "entropy.temperature_gain=0.1", "entropy.temperature_min=0.1")
    first = tr.step(0)
    h = first.update["entropy"]
    expect = 1.0 * (0.5 / h) ** 0.1
    assert h > 1.0 and tr.control.temperature == pytest.approx(expect)
    seen.clear()
    second = tr.step(1)
    assert engine.temperatures[-1] == (4, pytest.approx(expect)) and second.temperature == pytest.approx(expect)
    assert seen and all(t == pytest.approx(expect) for t in seen)
    tr, engine = recording_trainer(tmp_path / "off")
    tr.step(0)
    tr.step(1)
    assert [t for _, t in engine.temperatures] == [1.0, 1.0]


def test_clip_cov_acts_in_the_trainer_where_the_plain_clip_does_not(tmp_path):
    """On-policy (mu 1) the plain clip never acts (clip_frac 0); Clip-Cov stops the gradient of
    its picks (clip_frac > 0) and so moves the weights differently."""
    out = {}
    for loss in ("clip", "clip_cov"):
        tr, _ = recording_trainer(tmp_path / loss, f"algorithm.policy_loss={loss}", "algorithm.cov_ratio=0.3",
                                  "algorithm.clip_cov_bounds=[-100,100]")
        ro = tr.step(0)
        out[loss] = (ro.update["clip_frac"], [p.detach().clone() for p in tr.model.parameters()])
    assert out["clip"][0] == 0.0 and out["clip_cov"][0] > 0.1
    assert any(not torch.equal(a, b) for a, b in zip(out["clip"][1], out["clip_cov"][1]))


def test_kl_cov_acts_from_the_second_pass(tmp_path):
    """mu 2: KL-Cov's penalty is zero on the first pass (ratio 1) and acts on the second, so
    the weights differ from the plain clip's; with mu 1 the config refuses it."""
    from r1.errors import R1Error

    with pytest.raises(R1Error, match="kl_cov.*mu"):
        recording_trainer(tmp_path / "refused", "algorithm.policy_loss=kl_cov")
    weights = {}
    for loss in ("clip", "kl_cov"):
        tr, _ = recording_trainer(tmp_path / loss, f"algorithm.policy_loss={loss}", "algorithm.mu=2",
                                  "algorithm.cov_ratio=0.3", "optim.lr=0.05")
        ro = tr.step(0)
        assert ro.update["clip_frac"] > 0 or loss == "clip"
        weights[loss] = [p.detach().clone() for p in tr.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(weights["clip"], weights["kl_cov"]))


def test_an_entropy_collapse_is_said_in_the_log_and_the_report(tmp_path, capsys):
    """Entropies that fall below a fifth of the first within the window: one warning in the
    log naming the settings, and the same in report.md."""
    from r1.report.run import entropy_section
    from r1.trainers.watch import watch_entropy

    tr, _ = recording_trainer(tmp_path)
    rows = [{"entropy": h} for h in (1.0, 0.5, 0.1, 0.05)]
    watching: list | None = []
    for row in rows:
        watching = watch_entropy(watching, row, tr.cfg, tr_progress())
    assert watching is None
    out = capsys.readouterr().out
    assert out.count("entropy collapse") == 1 and "entropy.control=temperature" in out
    report = "\n".join(entropy_section([{"step": i + 1, **r} for i, r in enumerate(rows)], tr.cfg))
    assert "**Warning:** entropy collapse" in report
    steady = "\n".join(entropy_section([{"step": i + 1, "entropy": 1.0 - 0.05 * i} for i in range(12)], tr.cfg))
    assert "Warning" not in steady and "1.000 at step 1" in steady


def tr_progress():
    from r1.tracking import Progress

    return Progress(1, 0, enabled=False)

"""`r1 distill`: generate -> filter -> sft end to end on the tiny model, and resumption."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_distill_tiny_recipe_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "d"
    res = subprocess.run([sys.executable, "-m", "r1.cli.main", "distill", str(ROOT / "recipes" / "distill-tiny.yaml"),
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "student at" in res.stdout
    for f in ("generate/samples.jsonl", "generate/config.yaml", "generate/summary.json", "filter/kept.jsonl",
              "filter/dropped.jsonl", "filter/summary.json", "filter/config.yaml", "sft/model/config.json",
              "sft/report.md", "summary.json"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 32 and summary["filter"]["kept"] > 0
    from r1.models import load_model

    student, tok = load_model(str(out / "sft" / "model"), device="cpu")
    base, _ = load_model("tiny", device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), base.parameters()))
    # a re-run without --resume is refused; with it, it finds every stage done: same samples, same student
    before = (out / "generate" / "samples.jsonl").read_text()
    stamp = (out / "sft" / "model" / "config.json").stat().st_mtime_ns
    args = [sys.executable, "-m", "r1.cli.main", "distill", str(ROOT / "recipes" / "distill-tiny.yaml"), "--out", str(out)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "already holds a distillation: pass --resume" in res.stderr
    res = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "generate" / "samples.jsonl").read_text() == before
    assert (out / "sft" / "model" / "config.json").stat().st_mtime_ns == stamp


def test_distill_recipe_errors_name_the_section(tmp_path):
    from r1.errors import R1Error
    from r1.pipeline.distill import run_distill

    with pytest.raises(R1Error, match="generate: missing"):
        run_distill({"sft": {}}, tmp_path / "a")
    with pytest.raises(R1Error, match="unknown key 'sfft'"):
        run_distill({"generate": {"model": "tiny"}, "sft": {}, "sfft": {}}, tmp_path / "b")
    with pytest.raises(R1Error, match="eval.from_run: missing"):
        run_distill({"generate": {"model": "tiny"}, "sft": {}, "eval": {"samples": 2}}, tmp_path / "d")
    with pytest.raises(R1Error, match="unknown key 'eval.sample'"):
        run_distill({"generate": {"model": "tiny"}, "sft": {}, "eval": {"from_run": "x", "sample": 2}}, tmp_path / "e")
    with pytest.raises(R1Error, match="unknown key 'filter.max_tokenz'"):
        run_distill({"generate": {"model": "tiny", "task": "arithmetic"}, "filter": {"max_tokenz": 3}, "sft": {}},
                    tmp_path / "c")


def test_the_student_folder_prompts_a_bare_question_as_it_was_trained(tmp_path):
    """The student's chat template, rendered by plain transformers for the bare problem, gives
    the ids its SFT data put before the teacher's answer: the user turn as the teacher was shown
    it (here with an instruction suffix) and the forced <think> opening."""
    from transformers import AutoTokenizer

    from r1.data.chat import IGNORE, tokenize_conversation
    from r1.models import load_model
    from r1.pipeline.distill import run_distill
    from r1.runs import read_jsonl

    recipe = {"seed": 0, "generate": {"model": "tiny", "task": "arithmetic", "task_params": {"max_value": 9},
                                      "limit": 4, "samples": 1, "max_new_tokens": 8, "batch_size": 4,
                                      "suffix": "Answer in one line.", "prompt": {"force_think": True}},
              "filter": {"verify": False, "require_format": False, "min_language": 0.0, "max_repetition": 1.0},
              "sft": {"model": {"name": "tiny"}, "train": {"steps": 1, "max_length": 256},
                      "optim": {"micro_batch_size": 4, "warmup_steps": 0}, "tracking": {"progress": False}}}
    run_distill(recipe, tmp_path / "d", progress=False)
    student = AutoTokenizer.from_pretrained(tmp_path / "d" / "sft" / "model")
    _, base = load_model("tiny", device="cpu")
    rows = read_jsonl(tmp_path / "d" / "filter" / "kept.jsonl")
    samples = {r["id"]: r for r in read_jsonl(tmp_path / "d" / "generate" / "samples.jsonl")}
    assert rows
    for row in rows:
        question = samples[row["id"]]["problem"].split("\n")[0]  # the bare problem, before the suffix
        assert "Answer in one line." in row["problem"] and "Answer in one line." not in question
        bare = student.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=False)
        bare_ids = student(bare, add_special_tokens=False)["input_ids"]
        ids, labels = tokenize_conversation(base, [{"role": "user", "content": row["problem"]},
                                                   {"role": "assistant", "content": row["completion"]}])
        assert row["completion"].startswith("<think>\n") and bare.endswith("<think>\n")
        first = labels.index(next(x for x in labels if x != IGNORE))
        assert bare_ids == ids[: len(bare_ids)] and len(bare_ids) > first  # the prompt, then the forced opening

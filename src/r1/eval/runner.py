"""`r1 eval`: sample K answers per problem, verify, aggregate, write the evaluation folder.

`OUT/config.yaml` (the settings), `OUT/samples.jsonl` (every sample, written batch by batch:
`runs.BatchLog`, so an interrupted evaluation continued with `--resume` gives exactly
the numbers of an uninterrupted one), `OUT/summary.json` (the metrics), `OUT/report.md` and plots.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from pydantic import Field

from r1.data.prompts import is_strict_format
from r1.data.tasks import build_task, load_run
from r1.data.verify import extract
from r1.eval.metrics import majority_vote, mean_ci95, mean_se, pass_at_k
from r1.report.eval import write_eval_report
from r1.config import ToolsConfig
from r1.rollout.episodes import episode_metrics
from r1.rollout.sampler import Sampler, SamplingSettings, make_sampler
from r1.runs import BatchLog, claim_output
from r1.tracking import Progress, collect_versions


class EvalConfig(SamplingSettings):
    """Everything that decides the numbers; saved as `OUT/config.yaml` next to them."""

    benchmark: str = Field(description="the benchmark's name (or the held-out set's, with from_run)")
    data: str | None = Field(None, description="a local JSONL instead of the benchmark's dataset")
    fallback: str = Field("boxed", description="where the answer is read outside <answer> tags: boxed, "
                          "last_number, none, math, or task (the task's own extraction)")
    strict_format: bool = Field(False, description="extract answers as the task does, from the whole completion "
                                "(a training run's own template, with from_run); format_rate is always the strict "
                                "R1 template and answered_rate the share of samples with an answer found")
    from_run: str | None = Field(None, description="the training run whose held-out set, prompt and stop "
                                 "strings these are")
    tools: ToolsConfig | None = Field(None, description="every sample a multi-turn episode in which the model may "
                                      "call these tools (a local model; a training run's own with from_run)")


def _question(ex, suffix: str) -> str:
    return f"{ex.question.strip()}\n{suffix}" if suffix else ex.question.strip()


def compute_metrics(rows: list[dict], examples, samples: int, task) -> dict:
    """pass@1 (with its 95% interval), pass@k and cons@k (answers grouped by `task.equivalent`,
    the vote judged by `task.verify`), format and length figures, and with tools the episodes'."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_id[r["id"]].append(r)
    per_problem, cons, passk = [], [], defaultdict(list)
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, samples) if k <= samples})
    for ex in examples:
        group = sorted(by_id.get(ex.id, []), key=lambda r: r["sample"])
        if not group:
            continue
        n, c = len(group), sum(r["correct"] for r in group)
        per_problem.append(c / n)
        for k in ks:
            if k <= n:
                passk[k].append(pass_at_k(n, c, k))
        voted = majority_vote([r["answer"] for r in group], task.equivalent)
        cons.append(1.0 if voted is not None and task.verify(voted, ex) else 0.0)
    mean, low, high = mean_ci95(per_problem)
    lengths = [r["tokens"] for r in rows] or [0]
    metrics = {
        "pass@1": mean,
        "pass@1_ci95": [low, high],
        "pass@1_se": mean_se(per_problem)[1] if len(per_problem) > 1 else 0.0,
        **{f"pass@{k}": statistics.fmean(v) for k, v in sorted(passk.items()) if k > 1},
        f"cons@{samples}": statistics.fmean(cons) if cons else 0.0,
        "format_rate": statistics.fmean([r["format"] for r in rows]) if rows else 0.0,
        "answered_rate": statistics.fmean([r.get("answered", r["answer"] is not None) for r in rows]) if rows else 0.0,
        "response_length_mean": statistics.fmean(lengths),
        "response_length_median": statistics.median(lengths),
        "problems": len(per_problem),
        "samples_per_problem": samples,
    }
    if any("episode" in r for r in rows):  # with tools: turns, calls, errors, the share that called
        metrics.update(episode_metrics([r["episode"] for r in rows if "episode" in r]))
    return metrics


def breakdown(rows: list[dict], examples, key: str) -> dict:
    groups: dict[str, list[float]] = defaultdict(list)
    correct: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        correct[r["id"]].append(r["correct"])
    for ex in examples:
        if key in ex.meta and ex.id in correct:
            c = correct[ex.id]
            groups[str(ex.meta[key])].append(sum(c) / len(c))
    return {g: {"pass@1": statistics.fmean(v), "problems": len(v)} for g, v in sorted(groups.items())}


def run_eval(cfg: EvalConfig, out: Path, *, task, examples, sampler: Sampler | None = None, suffix: str = "",
             progress: bool = True, resume: bool = False, api_key: str | None = None) -> dict:
    """Evaluate and write config.yaml, samples.jsonl, summary.json, report.md and plots under
    `out` (see the module); `resume` continues an interrupted evaluation of the same settings.
    Without a `sampler`, the one `cfg` asks for (`make_sampler`), once `out` is claimed."""
    settings = cfg.model_dump(mode="json")
    claim_output(out, settings, resume=resume, what="an evaluation")
    sampler = sampler or make_sampler(cfg, answer_hint=task.answer_hint, api_key=api_key)
    examples = examples[: cfg.limit] if cfg.limit else examples
    log = BatchLog(out / "samples.jsonl", examples, cfg.samples, cfg.batch_size)
    bar = Progress(len(examples), log.problems_done, enabled=progress, description=f"eval {cfg.benchmark}")
    t0 = time.perf_counter()
    for b, batch in log.pending():
        results = sampler.sample([_question(ex, suffix) for ex in batch], cfg.samples, cfg.params(b))
        new = []
        for ex, group in zip(batch, results):
            for j, s in enumerate(group):
                if cfg.strict_format:  # a training run's own template, extraction and verifier
                    answer = task.extract(s.text)
                    answered = answer is not None
                else:
                    answer_part = s.content if "</think>" in s.text else s.text
                    answer = task.extract(answer_part) if cfg.fallback == "task" else \
                        extract(answer_part, fallback=cfg.fallback)
                    answered = answer is not None and (not s.text.startswith("<think>") or "</think>" in s.text)
                new.append({"id": ex.id, "sample": j, "problem": ex.question, "gold": ex.answer,
                            "completion": s.text, "reasoning": s.reasoning, "answer": answer,
                            "format": is_strict_format(s.text), "answered": answered, "tokens": s.tokens,
                            **({"episode": s.episode} if s.episode is not None else {})})
        by_id = {ex.id: ex for ex in batch}
        for r, ok in zip(new, task.verify_batch([r["answer"] for r in new], [by_id[r["id"]] for r in new])):
            r["correct"] = bool(ok)
        log.append(new)
        bar.update(len(batch), f"pass@1 {statistics.fmean(r['correct'] for r in log.rows):.3f}")
    bar.close()
    rows = log.rows
    result = {
        "benchmark": cfg.benchmark,
        "model": cfg.model,
        "metrics": compute_metrics(rows, examples, cfg.samples, task),
        "breakdown": {key: breakdown(rows, examples, key) for key in ("subject", "level")
                      if any(key in ex.meta for ex in examples)},
        "seconds_this_run": time.perf_counter() - t0,
        "seed": cfg.seed,
        "config": settings,
        "versions": collect_versions(),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    write_eval_report(out, result, rows)
    return result


def from_run_settings(run_dir: str | Path):
    """(task, held-out examples, EvalConfig fields) to evaluate on a training run's own
    held-out set with its prompts, extraction, verifier and stop strings."""
    rc, task = load_run(run_dir)
    return config_settings(rc, str(run_dir), task)


def config_settings(rc, label: str, task=None):
    """`from_run_settings` for a GRPO config (and its task, when already built): its task's
    held-out set, prompts and stops."""
    task = task or build_task(rc)
    _, examples = task.splits(rc.task.train_size, rc.task.heldout_size)
    fields = dict(prompt=rc.prompt, fallback=task.fallback, strict_format=True,
                  stop=list(rc.rollout.stop), from_run=label, tools=rc.tools)
    return task, examples, f"{rc.task.name} (held-out of {label})", fields

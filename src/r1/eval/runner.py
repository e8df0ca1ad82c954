"""`r1 eval`: sample K answers per problem, verify, aggregate, write results.

Resumable: problems are sampled in fixed batches (batch b holds problems
[b*B, (b+1)*B) and uses seed + b), each finished batch is appended to `samples.jsonl`,
and a re-run skips the batches already there, so an interrupted evaluation resumed gives
exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from r1.config import SamplingSettings
from r1.data.jsonl import read_log
from r1.data.prompts import PromptFormat, extract_answer, split_reasoning
from r1.errors import R1Error
from r1.eval.metrics import majority_vote, mean_ci95, pass_at_k
from r1.types import SamplingParams


class EvalConfig(SamplingSettings):
    """Everything that decides the numbers; saved as `eval_config.json` next to them."""

    model: str
    api_base: str | None = None
    benchmark: str
    data: str | None = None
    prompt_style: str = "auto"  # auto: the chat template if the tokenizer has one, else r1_zero
    template: str | None = None  # user-turn template ({question}); default: problem + suffix
    force_think: bool | None = None  # None: only where the model knows the <think> token
    answer_hint: str = "the final answer"
    fallback: str = "boxed"
    stop: list[str] = []  # stop strings besides EOS (a training run's own, with --from-run)
    strict_format: bool = False  # a run's own template: judge format by the strict R1 regex
    from_run: str | None = None


class LocalSampler:
    """Samples from a model that `r1.models` resolves, through the HF or the vLLM engine."""

    def __init__(self, cfg: EvalConfig):
        from r1.models import bf16_available, default_device, load_model
        from r1.rollout.hf import HFEngine

        device = default_device()
        if cfg.engine == "vllm":
            from transformers import AutoTokenizer

            from r1.models import resolve_path
            from r1.rollout.vllm import VLLMEngine, require_vllm

            require_vllm()  # before the tokenizer load: a missing vLLM is the error to report
            path = resolve_path(cfg.model)
            tok = AutoTokenizer.from_pretrained(path)
            self.engine = VLLMEngine(path, tok, gpu_memory_utilization=cfg.gpu_memory_utilization, sleep=False,
                                     seed=cfg.seed, kv_cache_gb=cfg.kv_cache_gb, enforce_eager=cfg.enforce_eager)
        else:
            model, tok = load_model(cfg.model, device=device)
            self.engine = HFEngine(model, tok, bf16=bf16_available(device))
        style = cfg.prompt_style
        if style == "auto":
            style = "chat" if getattr(tok, "chat_template", None) else "r1_zero"
        force = cfg.force_think
        if force is None:
            force = "<think>" in tok.get_vocab() or "<think>" in (getattr(tok, "chat_template", "") or "")
        self.prompt = PromptFormat(style, cfg.template or "{question}", cfg.answer_hint, force, tuple(cfg.stop))
        self.tokenizer = tok

    def sample(self, contents: list[str], k: int, params: SamplingParams):
        from r1.rollout.openai import Sample

        ids = [self.prompt.ids(c, self.tokenizer) for c in contents]
        gen = self.engine.generate(ids, k, params)
        out = []
        for i in range(len(contents)):
            row = []
            for j in range(k):
                text = self.prompt.prefill + gen.texts[i * k + j]
                reasoning, content = split_reasoning(text)
                row.append(Sample(text=text, reasoning=reasoning, content=content,
                                  tokens=len(gen.completion_ids[i * k + j])))
            out.append(row)
        return out


def _question(ex, suffix: str) -> str:
    return f"{ex.question.strip()}\n{suffix}" if suffix else ex.question.strip()


def compute_metrics(rows: list[dict], examples, samples: int, task) -> dict:
    """pass@1 (with its 95% interval), pass@k and cons@k (answers grouped by `task.equivalent`,
    the vote judged by `task.verify`), format and length figures."""
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
        **{f"pass@{k}": statistics.fmean(v) for k, v in sorted(passk.items()) if k > 1},
        f"cons@{samples}": statistics.fmean(cons) if cons else 0.0,
        "format_rate": statistics.fmean([r["format"] for r in rows]) if rows else 0.0,
        "answered_rate": statistics.fmean([r["answer"] is not None for r in rows]) if rows else 0.0,
        "response_length_mean": statistics.fmean(lengths),
        "response_length_median": statistics.median(lengths),
        "problems": len(per_problem),
        "samples_per_problem": samples,
    }
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


def run_eval(cfg: EvalConfig, out: Path, *, sampler=None, task=None, examples=None,
             suffix: str = "", progress: bool = True) -> dict:
    """Evaluate and write results.json, samples.jsonl, report.md and plots under `out`."""
    from r1.data.prompts import is_strict_format

    out.mkdir(parents=True, exist_ok=True)
    saved, settings = out / "eval_config.json", cfg.model_dump()
    if saved.is_file():
        old = json.loads(saved.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise R1Error(f"{out} holds an evaluation with other settings ({', '.join(diff)}): "
                          "use another --out, or the same settings to resume it")
    saved.write_text(json.dumps(settings, indent=1))
    if cfg.limit:
        examples = examples[: cfg.limit]
    samples_path = out / "samples.jsonl"
    rows = read_log(samples_path)  # a torn last line (killed run) is dropped: that batch is redone
    have = defaultdict(set)
    for r in rows:
        have[r["id"]].add(r["sample"])
    k, bsz = cfg.samples, cfg.batch_size
    batches = [examples[i : i + bsz] for i in range(0, len(examples), bsz)]
    complete = lambda batch: all(len(have[ex.id]) >= k for ex in batch)  # noqa: E731
    # keep only the rows of complete batches: a batch is all or nothing
    done_ids = {ex.id for b in batches if complete(b) for ex in b}
    rows = [r for r in rows if r["id"] in done_ids]
    samples_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    from r1.tracking import Progress

    bar = Progress(len(examples), len(done_ids), enabled=progress, description=f"eval {cfg.benchmark}")
    t0 = time.perf_counter()
    with samples_path.open("a") as f:
        for b, batch in enumerate(batches):
            if complete(batch):
                continue
            params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                    top_p=cfg.top_p, stop=tuple(cfg.stop), seed=cfg.seed + b * 1_000_003)
            results = sampler.sample([_question(ex, suffix) for ex in batch], k, params)
            new = []
            for ex, group in zip(batch, results):
                for j, s in enumerate(group):
                    if cfg.strict_format:  # a training run's own template, extraction and verifier
                        answer = task.extract(s.text)
                        fmt = is_strict_format(s.text)
                    else:
                        answer_part = s.content if "</think>" in s.text else s.text
                        answer = task.extract(answer_part) if cfg.fallback == "task" else \
                            extract_answer(answer_part, fallback=cfg.fallback)
                        fmt = answer is not None and (not s.text.startswith("<think>") or "</think>" in s.text)
                    new.append({"id": ex.id, "sample": j, "problem": ex.question, "gold": ex.answer,
                                "completion": s.text, "reasoning": s.reasoning, "answer": answer,
                                "format": bool(fmt), "tokens": s.tokens})
            by_id = {ex.id: ex for ex in batch}
            for r, ok in zip(new, task.verify_batch([r["answer"] for r in new], [by_id[r["id"]] for r in new])):
                r["correct"] = bool(ok)
            f.write("".join(json.dumps(r) + "\n" for r in new))
            f.flush()
            rows += new
            running = statistics.fmean(r["correct"] for r in rows)
            bar.update(len(batch), f"pass@1 {running:.3f}")
    bar.close()
    seconds = time.perf_counter() - t0

    from r1.tracking import collect_versions

    metrics = compute_metrics(rows, examples, k, task)
    result = {
        "benchmark": cfg.benchmark,
        "model": cfg.model,
        "metrics": metrics,
        "breakdown": {key: breakdown(rows, examples, key) for key in ("subject", "level")
                      if any(key in ex.meta for ex in examples)},
        "seconds_this_run": seconds,
        "seed": cfg.seed,
        "config": settings,
        "versions": collect_versions(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    from r1.report.eval import write_eval_report

    write_eval_report(out, result, rows)
    return result


def from_run_settings(run_dir: str | Path):
    """(task, held-out examples, EvalConfig fields) to evaluate on a training run's own
    held-out set with its prompts, extraction, verifier and stop strings."""
    from r1.config import load_run

    rc, task = load_run(run_dir)
    return config_settings(rc, str(run_dir), task)


def config_settings(rc, label: str, task=None):
    """`from_run_settings` for a GRPO config (and its task, when already built): its task's
    held-out set, prompts and stops."""
    from r1.data.tasks import get_task

    task = task or get_task(rc.task.name, rc.task.params, seed=rc.seed)
    _, examples = task.splits(rc.task.train_size, rc.task.heldout_size)
    fields = dict(prompt_style=rc.prompt.style, template=rc.prompt.template, force_think=rc.prompt.force_think,
                  answer_hint=task.answer_hint, fallback=task.fallback, strict_format=True,
                  stop=list(rc.rollout.stop), from_run=label)
    return task, examples, f"{rc.task.name} (held-out of {label})", fields

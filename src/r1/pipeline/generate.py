"""`r1 generate`: sample reasoning traces from a local model or an OpenAI-compatible API.

One JSONL row per sample: ``id``, ``sample``, ``problem``, ``gold``, ``reasoning``,
``content``, ``completion`` (``<think>\\nreasoning\\n</think>\\ncontent``; with DeepSeek's
``deepseek-reasoner`` the ``reasoning_content`` becomes the think part), ``tokens``,
``model`` — what `r1 filter` and `r1 sft` read.

Resumable: problems go in fixed batches (batch b uses seed + b), each finished batch is
appended and flushed, a re-run skips complete batches and redoes a partial one; the
settings sit beside the output (``OUT.settings.json``) and a re-run with other settings
is refused. API requests run concurrently, under an optional rate limit, and the openai
client retries 429s and 5xx with exponential backoff (``max_retries``).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1.config import SamplingSettings
from r1.data.prompts import user_content
from r1.errors import R1Error
from r1.types import SamplingParams


class GenerateConfig(SamplingSettings):
    model: str | None = None  # a model spec for local sampling
    api_base: str | None = None  # or an OpenAI-compatible endpoint
    api_model: str | None = None  # the model name the endpoint serves (default: --model or "default")
    data: str | None = None  # problems (JSONL); not needed for generated tasks or from_run
    task: str = "math"  # how to read the data and what the gold answer is
    task_params: dict = {}  # for generated tasks (arithmetic, countdown)
    from_run: str | None = None  # a training run as teacher: its model, task (train split), prompts, stops
    prompt_style: str = "auto"
    template: str | None = None
    force_think: bool | None = None
    stop: list[str] = []
    concurrency: int = 8
    rate_limit: float | None = None  # requests per second to the API
    max_retries: int = 5
    suffix: str | None = None  # appended to each problem; default: the task's benchmark instruction


def resolve_run(cfg: GenerateConfig) -> GenerateConfig:
    """Fill model, task and prompt settings from a training run (`from_run`)."""
    if not cfg.from_run:
        return cfg
    from r1.config import load_run

    run = Path(cfg.from_run)
    rc, _ = load_run(run, what="from_run")
    return cfg.model_copy(update={
        "model": cfg.model or str(run / "model"), "task": rc.task.name, "task_params": dict(rc.task.params),
        "prompt_style": rc.prompt.style, "template": rc.prompt.template, "force_think": rc.prompt.force_think,
        "stop": list(rc.rollout.stop), "suffix": "" if cfg.suffix is None else cfg.suffix,
        "seed": cfg.seed, "from_run": None,
    })


def _examples(cfg: GenerateConfig):
    from r1.data.tasks import get_task

    generated = cfg.task in ("arithmetic", "countdown")
    if not generated and not cfg.data:
        raise R1Error(f"task {cfg.task!r} reads its problems from a file: give --data PATH")
    task = get_task(cfg.task, cfg.task_params if generated else {"path": cfg.data}, seed=cfg.seed)
    if generated:  # a fresh seeded training split (the held-out split stays unseen)
        examples, _ = task.splits(cfg.limit or 256, 1)
        return task, examples
    examples = task.all_examples()
    return task, examples[: cfg.limit] if cfg.limit else examples


def _suffix(cfg: GenerateConfig) -> str:
    if cfg.suffix is not None:
        return cfg.suffix
    from r1.eval.benchmarks import BENCHMARKS

    for b in BENCHMARKS.values():
        if b.task == cfg.task:
            return b.suffix
    return ""


def _require_source(cfg: GenerateConfig) -> None:
    if not cfg.model and not cfg.api_base:
        raise R1Error("give --model SPEC (local sampling) or --api-base URL (an OpenAI-compatible API)")


def make_sampler(cfg: GenerateConfig, answer_hint: str = "the final answer", api_key: str | None = None):
    _require_source(cfg)
    if cfg.api_base:
        from r1.rollout.openai import APISampler

        return APISampler(cfg.api_base, cfg.api_model or cfg.model or "default", api_key,
                          concurrency=cfg.concurrency, max_retries=cfg.max_retries, rate_limit=cfg.rate_limit)
    from r1.eval.runner import EvalConfig, LocalSampler

    return LocalSampler(EvalConfig(model=cfg.model, benchmark=cfg.task, max_new_tokens=cfg.max_new_tokens,
                                   prompt_style=cfg.prompt_style, template=cfg.template,
                                   force_think=cfg.force_think, answer_hint=answer_hint, engine=cfg.engine,
                                   gpu_memory_utilization=cfg.gpu_memory_utilization,
                                   kv_cache_gb=cfg.kv_cache_gb, enforce_eager=cfg.enforce_eager, seed=cfg.seed))


def run_generate(cfg: GenerateConfig, out: str | Path, *, sampler=None, progress: bool = True,
                 api_key: str | None = None) -> dict:
    from r1.data.jsonl import read_log
    from r1.tracking import Progress

    out = Path(out)
    cfg = resolve_run(cfg)
    if sampler is None:
        _require_source(cfg)  # the one-line error before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    settings_path = Path(f"{out}.settings.json")
    settings = cfg.model_dump()
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        old = json.loads(settings_path.read_text())
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise R1Error(f"{out} was generated with other settings ({', '.join(diff)}): "
                      "use another --out, or the same settings to resume it")
    settings_path.write_text(json.dumps(settings, indent=1))
    task, examples = _examples(cfg)
    suffix = _suffix(cfg)
    sampler = sampler or make_sampler(cfg, task.answer_hint, api_key)
    name = cfg.api_model or cfg.model or "default"
    k, bsz = cfg.samples, cfg.batch_size
    batches = [examples[i : i + bsz] for i in range(0, len(examples), bsz)]
    rows = read_log(out)  # a torn last line from a killed run is dropped
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("id"))] = counts.get(str(r.get("id")), 0) + 1
    done = [all(counts.get(ex.id, 0) >= k for ex in b) for b in batches]
    keep = {ex.id for b, d in zip(batches, done) if d for ex in b}
    rows = [r for r in rows if r.get("id") in keep]  # a partial batch is redone whole
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    bar = Progress(len(examples), len(keep), enabled=progress, description="generate")
    with out.open("a", encoding="utf-8") as f:
        for b, (batch, complete) in enumerate(zip(batches, done)):
            if complete:
                continue
            params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                    top_p=cfg.top_p, seed=cfg.seed + b * 1_000_003, stop=tuple(cfg.stop))
            questions = [f"{ex.question.strip()}\n{suffix}" if suffix else ex.question.strip() for ex in batch]
            results = sampler.sample(questions, k, params)
            # "problem" is the user turn exactly as the model saw it (the run's template filled in)
            shown = [user_content(q, cfg.template, task.answer_hint) if cfg.template else q for q in questions]
            new = [{"id": ex.id, "sample": j, "problem": u, "gold": ex.answer, "reasoning": s.reasoning,
                    "content": s.content, "completion": s.text, "tokens": s.tokens, "model": name,
                    **({"meta": ex.meta} if ex.meta else {})}
                   for ex, u, group in zip(batch, shown, results) for j, s in enumerate(group)]
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
            f.flush()
            rows += new
            bar.update(len(batch), f"{len(rows)} samples")
    bar.close()
    return {"samples": len(rows), "problems": len(examples), "out": str(out)}

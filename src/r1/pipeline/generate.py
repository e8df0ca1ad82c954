"""`r1 generate --out DIR`: sample reasoning traces from a local model or an OpenAI-compatible API.

`DIR/samples.jsonl` holds one row per sample: ``id``, ``sample``, ``problem``, ``gold``,
``reasoning``, ``content``, ``completion`` (``<think>\\nreasoning\\n</think>\\ncontent``; with
DeepSeek's ``deepseek-reasoner`` the ``reasoning_content`` becomes the think part), ``tokens``,
``model`` — what `r1 filter` and `r1 sft` read. `DIR/config.yaml` holds the settings,
`DIR/summary.json` the counts.

Resumable as `r1 eval` is (`runs`): fixed batches with their own seeds, each appended
and flushed; `--resume` with the same settings skips complete batches and redoes a partial one.
API requests run concurrently, under an optional rate limit, and the openai client retries
429s and 5xx with exponential backoff (``max_retries``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from pydantic import Field

from r1.config import PromptConfig, split_seed
from r1.data.prompts import CHAT_TEMPLATE, PromptFormat
from r1.data.tasks import get_task, load_run
from r1.errors import R1Error
from r1.eval.benchmarks import BENCHMARKS
from r1.rollout.sampler import SamplingSettings, make_sampler
from r1.runs import BatchLog, claim_output
from r1.tracking import Progress


class GenerateConfig(SamplingSettings):
    data: str | None = Field(None, description="the problems (JSONL); not needed for generated tasks or from_run")
    task: str = Field("math", description="how to read the data and what the gold answer is (a task name)")
    task_params: dict = Field(default_factory=dict, description="a generated task's options (arithmetic, countdown)")
    from_run: str | None = Field(None, description="a training run as teacher: its model, task (training split), "
                                 "prompt and stop strings")
    suffix: str | None = Field(None, description="appended to each problem; default: the task's benchmark "
                               "instruction")
    split: dict | None = Field(None, description="a generated task's split as a training run made it "
                               "({train_size, heldout_size, seed}): problems come from its training part only, so "
                               "the run's held-out problems stay unseen; from_run and pipelines set it")


def resolve_run(cfg: GenerateConfig) -> GenerateConfig:
    """Fill model, task and prompt settings from a training run (`from_run`)."""
    if not cfg.from_run:
        return cfg
    run = Path(cfg.from_run)
    rc, _ = load_run(run, what="from_run")
    return cfg.model_copy(update={
        "model": cfg.model or str(run / "model"), "task": rc.task.name, "task_params": dict(rc.task.params),
        "prompt": rc.prompt,
        "stop": list(rc.rollout.stop), "suffix": "" if cfg.suffix is None else cfg.suffix,
        "seed": cfg.seed, "from_run": None, "split": run_split(rc),
    })


def run_split(rc) -> dict:
    """The train/held-out split of a training config (`Config`), as `GenerateConfig.split`."""
    return {"train_size": rc.task.train_size, "heldout_size": rc.task.heldout_size,
            "seed": split_seed(rc)}


def _task(cfg: GenerateConfig):
    """The task of a generation config: a generated task seeded as the run's split was (or by the
    config's seed), else the problems file."""
    generated = cfg.task in ("arithmetic", "countdown")
    if not generated and not cfg.data:
        raise R1Error(f"task {cfg.task!r} reads its problems from a file: give --data PATH")
    if generated and cfg.split:
        return get_task(cfg.task, cfg.task_params, seed=cfg.split["seed"])
    return get_task(cfg.task, cfg.task_params if generated else {"path": cfg.data}, seed=cfg.seed)


def _examples(cfg: GenerateConfig):
    task = _task(cfg)
    if cfg.task in ("arithmetic", "countdown"):
        if cfg.split:  # a run's training split: its held-out problems stay unseen
            train, _ = task.splits(cfg.split["train_size"], cfg.split["heldout_size"])
            return task, train[: cfg.limit] if cfg.limit else train
        examples, _ = task.splits(cfg.limit or 256, 1)  # a fresh seeded draw (no held-out set to keep out)
        return task, examples
    examples = task.all_examples()
    return task, examples[: cfg.limit] if cfg.limit else examples


def _suffix(cfg: GenerateConfig) -> str:
    if cfg.suffix is not None:
        return cfg.suffix
    return next((b.suffix for b in BENCHMARKS.values() if b.task == cfg.task), "")


def student_prompt(cfg: GenerateConfig) -> Callable[[Any], PromptFormat]:
    """The prompt of a student distilled from these samples, for its tokenizer: the user turn as
    the teacher was shown it (the prompt template with the task's instruction suffix; an API
    teacher was sent the problem as it is), the answer opened with `<think>` where the teacher's
    was. Written into the student's chat template, so that it is prompted as it was trained."""
    cfg = resolve_run(cfg)
    task = _task(cfg)
    spec = cfg.prompt if not cfg.api_base else PromptConfig(style="chat", template="{question}", force_think=False)
    suffix = _suffix(cfg)
    if suffix:
        template = (spec.template or CHAT_TEMPLATE).replace("{question}", "{question}\n" + suffix.strip())
        spec = spec.model_copy(update={"template": template})
    return lambda tok: PromptFormat.resolve(spec, tok, task.answer_hint, cfg.stop)


def _require_source(cfg: GenerateConfig) -> None:
    if not cfg.model and not cfg.api_base:
        raise R1Error("give --model SPEC (local sampling) or --api-base URL (an OpenAI-compatible API)")


def run_generate(cfg: GenerateConfig, out: str | Path, *, sampler=None, progress: bool = True,
                 api_key: str | None = None, resume: bool = False) -> dict:
    """Sample into the folder `out` (see the module); `resume` continues it."""
    out = Path(out)
    cfg = resolve_run(cfg)
    if sampler is None:
        _require_source(cfg)  # the one-line error before anything is written
    settings = cfg.model_dump(mode="json")
    claim_output(out, settings, resume=resume, what="generated samples")
    task, examples = _examples(cfg)
    suffix = _suffix(cfg)
    sampler = sampler or make_sampler(cfg, answer_hint=task.answer_hint, api_key=api_key)
    name = cfg.api_model or cfg.model or "default"
    log = BatchLog(out / "samples.jsonl", examples, cfg.samples, cfg.batch_size)
    bar = Progress(len(examples), log.problems_done, enabled=progress, description="generate")
    for b, batch in log.pending():
        questions = [f"{ex.question.strip()}\n{suffix}" if suffix else ex.question.strip() for ex in batch]
        results = sampler.sample(questions, cfg.samples, cfg.params(b))
        shown = [sampler.user_turn(q) for q in questions]  # "problem": the user turn as the model saw it
        log.append([{"id": ex.id, "sample": j, "problem": u, "gold": ex.answer, "reasoning": s.reasoning,
                     "content": s.content, "completion": s.text, "tokens": s.tokens, "model": name,
                     **({"meta": ex.meta} if ex.meta else {})}
                    for ex, u, group in zip(batch, shown, results) for j, s in enumerate(group)])
        bar.update(len(batch), f"{len(log.rows)} samples")
    bar.close()
    summary = {"samples": len(log.rows), "problems": len(examples), "model": name,
               "tokens_mean": sum(r["tokens"] for r in log.rows) / max(len(log.rows), 1), "out": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary

"""Tasks: examples + prompt hint + verifier. Looked up by name in `TASKS`."""

from __future__ import annotations

from typing import Any

from r1.errors import R1Error


def registered_tasks() -> dict[str, type]:
    """Every task class by its name."""
    from r1.data.tasks.arithmetic import ArithmeticTask
    from r1.data.tasks.code import HumanEvalTask
    from r1.data.tasks.countdown import CountdownTask
    from r1.data.tasks.files import GSM8KTask, MathTask
    from r1.data.tasks.mixture import MixtureTask

    return {t.name: t for t in (CountdownTask, ArithmeticTask, GSM8KTask, MathTask, HumanEvalTask, MixtureTask)}


def get_task(name: str, params: dict[str, Any] | None = None, seed: int = 0):
    """Build task `name` with its validated `params`; a clear R1Error on bad input."""
    from pydantic import ValidationError

    tasks = registered_tasks()
    if name not in tasks:
        raise R1Error(f"unknown task {name!r}: known tasks are {', '.join(sorted(tasks))}")
    cls = tasks[name]
    try:
        p = cls.Params(**(params or {}))
    except ValidationError as e:
        from r1.errors import describe_validation_error

        raise R1Error(describe_validation_error(e, prefix="task.params")) from None
    if getattr(cls, "nested", False):  # a task made of other tasks looks them up here
        return cls(p, seed=seed, get_task=get_task)
    return cls(p, seed=seed)


def build_task(cfg):
    """The task of a GRPO config (`r1.config.Config`), its split seeded by `config.split_seed`."""
    from r1.config import split_seed

    return get_task(cfg.task.name, cfg.task.params, seed=split_seed(cfg))


def load_run(run_dir, what: str = ""):
    """(config, task) of a training run folder (`r1 zero`/`r1 grpo` output): the one way any
    command turns a run into its task, prompt and stop strings (`PromptFormat.of(cfg, task.answer_hint)`)."""
    from pathlib import Path

    from r1.config import load_config

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise R1Error(f"{what + ': ' if what else ''}{run} has no config.yaml: not a training run directory")
    rc = load_config(run / "config.yaml")
    return rc, build_task(rc)

"""The configuration reference, written from the config models themselves: every key of every
recipe kind, its type, its default and its description, so the documentation cannot drift from
the code. `missing_descriptions()` names the fields that have none (a test keeps it empty)."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _recipe_kinds() -> list[tuple[str, str, type[BaseModel]]]:
    """(heading, what it configures, model) for each kind of settings a user writes."""
    from r1.config import Config, FilterConfig, SFTConfig
    from r1.pipeline.generate import GenerateConfig
    from r1.pipeline.recipes import DistillEval, DistillRecipe, DistillStage, GRPOStage, PipelineRecipe, SFTStage

    return [
        ("GRPO recipes: `r1 zero`, `r1 grpo`", "A GRPO recipe (and the presets of `r1 zero`). Every key can be "
         "set on the command line with `--set section.key=value`.", Config),
        ("SFT recipes: `r1 sft`", "Chat SFT with the loss on assistant tokens.", SFTConfig),
        ("Sampling: `r1 generate`, `r1 eval`", "The settings of `r1 generate` (its flags, or a distillation "
         "recipe's `generate:` section); `r1 eval` takes the same sampling flags.", GenerateConfig),
        ("Rejection sampling: `r1 filter`", "The flags of `r1 filter` and a recipe's `filter:` section.", FilterConfig),
        ("Distillation recipes: `r1 distill`", "Teacher samples, rejection sampling and SFT in one recipe.",
         DistillRecipe),
        ("Distillation: `eval:`", "The student before and after, in a distillation recipe.", DistillEval),
        ("Pipeline recipes: `r1 pipeline`", "The shared sections of a multi-stage recipe.", PipelineRecipe),
        ("Pipeline stage `kind: sft`", "A cold-start (or any) SFT stage.", SFTStage),
        ("Pipeline stage `kind: distill`", "Rejection sampling from a teacher stage, then SFT.", DistillStage),
        ("Pipeline stage `kind: grpo`", "An RL stage on the shared task, prompt and rollout.", GRPOStage),
    ]


def _task_params() -> list[tuple[str, type[BaseModel]]]:
    from r1.data.tasks import registered_tasks

    return [(name, cls.Params) for name, cls in sorted(registered_tasks().items())]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) if not isinstance(a, str) else a for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, set):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return "mapping" if not args else f"mapping[{_type_name(args[0])}, {_type_name(args[1])}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (itself, or inside `X | None`), if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in typing.get_args(annotation):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "null"
    text = repr(value) if not isinstance(value, str) else (f'"{value}"' if value else '""')
    text = text.replace("\n", "\\n")
    return _cell(f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`")


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo, type[BaseModel] | None]]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        rows.append((key, field, nested))
        if nested is not None and nested is not model:
            rows.extend(_rows(nested, key + "."))
    return rows


def missing_descriptions(models: list[type[BaseModel]] | None = None) -> list[str]:
    """The dotted keys, across every settings model, whose field has no description."""
    if models is None:
        models = [m for _, _, m in _recipe_kinds()] + [p for _, p in _task_params()]
    return [f"{m.__name__}.{key}" for m in models for key, field, _ in _rows(m)
            if not (field.description or "").strip()]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for key, field, nested in _rows(model, prefix):
        kind = "section" if nested is not None and _type_name(field.annotation) == nested.__name__ else \
            _type_name(field.annotation)
        out.append(f"| `{key}` | {_cell(kind)} | {_default(field)} | {_cell(field.description or '')} |")
    return out


def _rewards() -> list[str]:
    from r1.rewards.registry import CONTEXT, REWARDS, available

    out = ["| reward | what it scores | parameters (`reward_params.NAME`) |", "|---|---|---|"]
    for name in available():
        fn = REWARDS[name]
        doc = _cell((inspect.getdoc(fn) or "").split("\n\n")[0])
        params = [p for p in list(inspect.signature(fn).parameters.values())[3:]
                  if p.name not in (*CONTEXT, "ran_on") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        shown = ", ".join(f"`{p.name}`" + ("" if p.default is p.empty else f" = `{p.default!r}`") for p in params)
        out.append(f"| `{name}` | {doc} | {_cell(shown) or '–'} |")
    return out


def config_reference() -> str:
    """The whole reference as Markdown (the documentation site's configuration page)."""
    lines = []
    for heading, what, model in _recipe_kinds():
        lines += [f"## {heading}", "", what, ""] + _table(model) + [""]
    lines += ["## Task parameters: `task.params`", "",
              "Each task takes its own options under `task.params` (and `r1 generate --task-params`).", ""]
    for name, params in _task_params():
        lines += [f"### `{name}`", ""]
        lines += _table(params) if params.model_fields else ["No parameters."]
        lines.append("")
    lines += ["## Rewards: `rewards`, `reward_params`", "",
              "`rewards` maps a reward's name (or `path/to/file.py:function`) to its weight; "
              "`reward_params` gives a reward its keyword parameters.", ""] + _rewards() + [""]
    return "\n".join(lines)

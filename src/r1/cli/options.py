"""Options shared by several commands, defined once (typer reads them as defaults)."""

from __future__ import annotations

from typing import Optional

import typer

ApiKey = typer.Option(None, "--api-key", help="API key (default: $R1_API_KEY, else $OPENAI_API_KEY)")


# --out and --resume: every command writes one folder, by default runs/COMMAND-NAME, and
# continues a folder that already holds its work only when told (--resume)
Resume = typer.Option(False, "--resume", help="continue the work in --out (same settings), where it stopped")
SetOpt = typer.Option(None, "--set", help="override a config key, e.g. --set optim.lr=1e-5 (repeatable)")


def out_option(default: str) -> typer.models.OptionInfo:
    return typer.Option(None, help=f"output folder (default {default})")


def default_out(command: str, *names: str | None) -> str:
    """runs/COMMAND-NAME, NAME from the recipe, preset, benchmark or model: a path gives its
    last part without a file suffix (a run's `model/` folder gives the run's name)."""
    import re
    from pathlib import PurePosixPath

    parts = []
    for n in names:
        if not n:
            continue
        path = PurePosixPath(n.rstrip("/"))
        if path.name == "model" and path.parent.name:
            path = path.parent
        name = path.name
        for suffix in (".yaml", ".yml", ".jsonl", ".gguf"):
            name = name.removesuffix(suffix)
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "_", name))
    return "-".join([f"runs/{command}", *parts])


def recipe_command(command: str, recipe_help: str):
    """The recipe dialect of the training commands: RECIPE, --out (default runs/COMMAND-RECIPE),
    --resume and --set; the command is called as fn(recipe, out, resume, sets)."""

    def wrap(fn):
        def run(recipe: str = typer.Argument(..., help=recipe_help),
                out: Optional[str] = out_option(f"runs/{command}-RECIPE"), resume: bool = Resume,
                set_: Optional[list[str]] = SetOpt) -> None:
            return fn(recipe, out or default_out(command, recipe), resume, list(set_ or []))

        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        return run

    return wrap


Progress = typer.Option(True, "--progress/--no-progress", help="a progress bar")

# flags named otherwise than their field: the prompt's force_think, booleans with a named opposite
_FLAG_NAMES = {"prompt_force_think": ("force_think", "--force-think/--no-force-think"),
               "enforce_eager": ("enforce_eager", "--enforce-eager/--compile"),
               "precision": ("precision", "--precision", "--dtype")}


def _annotation(field) -> type:
    """The type typer parses a settings field as (Literal choices are checked by the settings)."""
    import typing

    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is typing.Literal:
        return str
    if args and type(None) in typing.get_args(ann):  # X | None
        inner = args[0]
        return typing.Optional[str if typing.get_origin(inner) is typing.Literal else inner]
    return ann


def settings_fields(cls):
    """(flag parameter name, settings path, pydantic field, default, flag declarations) of every
    field of the settings class `cls`, a nested settings section flattened (prompt.style:
    prompt_style); the defaults are those of `cls()`. A list of sections (`prompt.examples`)
    has no flag: it is written in a recipe file."""
    import typing

    from pydantic import BaseModel

    def walk(obj, prefix):
        fields = type(obj).model_fields
        own = [n for n in vars(type(obj)).get("__annotations__", {}) if n in fields]  # before inherited ones
        for name, field in sorted(fields.items(), key=lambda kv: kv[0] not in own):
            value = getattr(obj, name)
            if isinstance(value, BaseModel):
                yield from walk(value, (*prefix, name))
                continue
            inner = typing.get_args(field.annotation)
            if typing.get_origin(field.annotation) is list and inner and isinstance(inner[0], type) \
                    and issubclass(inner[0], BaseModel):
                continue
            key = "_".join((*prefix, name))
            param, *decls = _FLAG_NAMES.get(key, (key,))
            yield param, (*prefix, name), field, (value or None) if isinstance(value, list) else value, decls

    yield from walk(cls(), ())


def config_flags(cls, *, into: str, common: dict | None = None):
    """Give a command one flag per field of the settings class `cls` (`settings_fields`; those
    the command declares itself excepted), named, defaulted and described by the field, plus
    the `common` options ({name: (type, typer option)}). The command is called with its own
    parameters, the common ones, and `into`: the flags' values as `cls`'s fields (nested)."""
    import functools
    import inspect
    import typing

    common = common or {}

    def wrap(fn):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(fn).parameters.values()
               if p.name not in common and p.name != into]
        taken = {p.name for p in own}
        fields = [entry for entry in settings_fields(cls) if entry[0] not in taken]
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=opt)
                  for n, (ann, opt) in common.items()]
        params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(f),
                                     default=typer.Option(d, *decls, help=f.description))
                   for n, path, f, d, decls in fields]

        @functools.wraps(fn)
        def command(**kwargs):
            values: dict = {}
            for n, path, f, _, _ in fields:
                value = kwargs.pop(n)
                if value is None and typing.get_origin(f.annotation) is list:  # a repeatable flag not given
                    value = []
                target = values
                for key in path[:-1]:
                    target = target.setdefault(key, {})
                target[path[-1]] = value
            return fn(**kwargs, **{into: values})

        command.__signature__ = inspect.Signature(own + params)
        return command

    return wrap


def sampling_command(out_default: str):
    """The sampling dialect of `r1 eval` and `r1 generate`: one flag per `SamplingSettings`
    field, and --out, --resume, --api-key, --progress; the settings arrive as `sampling`."""
    from r1.rollout.sampler import SamplingSettings

    return config_flags(SamplingSettings, into="sampling", common={
        "out": (Optional[str], out_option(out_default)), "resume": (bool, Resume),
        "api_key": (Optional[str], ApiKey), "progress": (bool, Progress)})


def build(cls, **fields):
    """A settings object from command-line values; a bad value is a one-line error naming it."""
    from pydantic import ValidationError

    from r1.errors import R1Error, describe_validation_error

    try:
        return cls(**fields)
    except ValidationError as e:
        raise R1Error(describe_validation_error(e)) from None

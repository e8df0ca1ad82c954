"""Options shared by several commands, defined once (typer reads them as defaults)."""

from __future__ import annotations

from typing import Optional

import typer

GpuMemoryUtilization = typer.Option(0.85, min=0.01, max=1.0, help="vLLM on a GPU: its share of the GPU memory")
KvCacheGb = typer.Option(None, min=0.0, help="vLLM: KV cache size in GiB (on a CPU: default 2, since "
                                             "vLLM reads --gpu-memory-utilization there as a share of the RAM)")
ApiKey = typer.Option(None, "--api-key", help="API key (default: $R1_API_KEY, else $OPENAI_API_KEY)")
EnforceEager = typer.Option(False, "--enforce-eager/--compile", help="vLLM: skip graph capture/compilation "
                                                                     "(starts in seconds, decodes somewhat slower)")


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


# sampling (r1 eval, r1 generate): one flag per field of `SamplingSettings`, its default and its
# description the flag's, derived here (`sampling_command`), never written again
Progress = typer.Option(True, "--progress/--no-progress", help="a progress bar")

# the prompt's fields and the booleans keep their short flag names
_FLAG_NAMES = {"force_think": ("--force-think/--no-force-think",), "enforce_eager": ("--enforce-eager/--compile",)}


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


def sampling_fields():
    """(flag parameter name, settings path, pydantic field, default) of every sampling setting;
    the prompt's fields with the defaults of sampling's prompt (`config.AS_GIVEN`)."""
    from r1.rollout.sampler import SamplingSettings

    for name, field in SamplingSettings.model_fields.items():
        if name == "prompt":
            prompt = field.get_default(call_default_factory=True)
            for sub, f in type(prompt).model_fields.items():
                yield ("force_think" if sub == "force_think" else f"prompt_{sub}"), ("prompt", sub), f, \
                    getattr(prompt, sub)
        else:
            default = field.get_default(call_default_factory=True)
            yield name, (name,), field, (default or None) if isinstance(default, list) else default


def sampling_command(out_default: str):
    """The sampling dialect of `r1 eval` and `r1 generate`: one flag per `SamplingSettings` field
    (besides the command's own parameters), and --out, --resume, --api-key, --progress. The
    command is called with its own parameters, those four, and `sampling`: the flags' values
    as the settings' fields (the prompt's nested)."""
    import functools
    import inspect

    common = {"out": (Optional[str], out_option(out_default)), "resume": (bool, Resume),
              "api_key": (Optional[str], ApiKey), "progress": (bool, Progress)}

    def wrap(fn):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(fn).parameters.values()
               if p.name not in common and p.name != "sampling"]
        taken = {p.name for p in own}
        fields = [(n, path, f, d) for n, path, f, d in sampling_fields() if n not in taken]
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=opt)
                  for n, (ann, opt) in common.items()]
        params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(f),
                                     default=typer.Option(d, *_FLAG_NAMES.get(n, ()), help=f.description))
                   for n, path, f, d in fields]

        @functools.wraps(fn)
        def command(**kwargs):
            sampling: dict = {}
            for n, path, _, _ in fields:
                value = kwargs.pop(n)
                if n == "stop":
                    value = list(value or [])
                target = sampling
                for key in path[:-1]:
                    target = target.setdefault(key, {})
                target[path[-1]] = value
            return fn(**kwargs, sampling=sampling)

        command.__signature__ = inspect.Signature(own + params)
        return command

    return wrap


def build(cls, **fields):
    """A settings object from command-line values; a bad value is a one-line error naming it."""
    from pydantic import ValidationError

    from r1.errors import R1Error, describe_validation_error

    try:
        return cls(**fields)
    except ValidationError as e:
        raise R1Error(describe_validation_error(e)) from None

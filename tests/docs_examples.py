"""The `r1 …` lines of the README's and the documentation's shell blocks, checked against the
real command line: the command exists, every option exists and parses (the parser `r1`
runs them through, typer's click), and every file a line names exists in the repository or is made by an
earlier line of the same page (an `--out`/`--to` folder, or `make demo`'s run folder)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_SUFFIXES = (".yaml", ".yml", ".jsonl", ".json", ".gguf", ".py", ".safetensors")
PATH_PREFIXES = ("runs/", "recipes/", "docs/", "exported/", "./", "../")
OUTPUT_OPTIONS = ("--out", "--to")


@dataclass
class Example:
    page: str
    line: str
    args: list[str]  # what follows `r1`


def doc_pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def shell_lines(text: str) -> list[str]:
    """The logical lines of every fenced shell block (backslash continuations joined)."""
    out = []
    for block in SHELL_BLOCK.findall(text):
        out += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return out


def r1_args(line: str) -> list[str] | None:
    """The arguments after `r1` (or `python -m r1`, `accelerate launch … -m r1`), else None."""
    try:
        tokens = shlex.split(line.removeprefix("$ "), comments=True)
    except ValueError:
        return None
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):  # VAR=value r1 …
        tokens = tokens[1:]
    if tokens[:1] == ["r1"]:
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "r1":
            return tokens[i + 2:]
    return None


def examples(pages: list[Path] | None = None) -> list[Example]:
    found = []
    for page in pages or doc_pages():
        for line in shell_lines(page.read_text(encoding="utf-8")):
            args = r1_args(line)
            name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name
            if args is not None:
                found.append(Example(name, line, args))
            elif line.startswith("make demo"):
                found.append(Example(name, line, []))
    return found


def _demo_out() -> str:
    m = re.search(r"^OUT \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)
    return m.group(1)


def _command(root, args: list[str]):
    cmd, name = root, "r1"
    while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
        name += " " + args[0]
        cmd, args = cmd.commands[args[0]], args[1:]
    return cmd, args, name


def _paths(args: list[str]) -> list[tuple[str | None, str]]:
    """(the option it is given to, or None, value) for each argument that names a file."""
    out, prev = [], None
    for a in args:
        if not a.startswith("-") and "://" not in a and (a.endswith(FILE_SUFFIXES) or a.startswith(PATH_PREFIXES)):
            out.append((prev, a))
        prev = a if a.startswith("--") else None
    return out


def check(found: list[Example]) -> list[str]:
    """One message per problem, naming the page and the line."""
    from typer.main import get_command

    from r1.cli.main import app

    root = get_command(app)
    problems, made = [], {}
    for ex in found:
        made.setdefault(ex.page, set())
        if not ex.args and ex.line.startswith("make demo"):
            made[ex.page].add(_demo_out())
            continue
        cmd, rest, name = _command(root, list(ex.args))
        if hasattr(cmd, "commands") and not cmd.invoke_without_command:
            problems.append(f"{ex.page}: `{ex.line}`: no such command {name} {rest[:1]}")
            continue
        try:  # typer carries a click of its own: its errors are told by their interface
            cmd.make_context(name, list(rest))
        except Exception as e:
            if not hasattr(e, "format_message"):
                raise
            problems.append(f"{ex.page}: `{ex.line}`: {e.format_message()}")
            continue
        for option, path in _paths(ex.args):
            if option in OUTPUT_OPTIONS:
                made[ex.page].add(path)
            elif not ((ROOT / path).exists() or any(path == m or path.startswith(m + "/") for m in made[ex.page])):
                problems.append(f"{ex.page}: `{ex.line}`: {path} is neither in the repository nor made by an "
                                "earlier line of the page")
    return problems

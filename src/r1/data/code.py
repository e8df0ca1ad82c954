"""Code answers: the last fenced code block of a completion, whether two programs are the
same, and verification by running the problem's tests in the sandbox (`r1.sandbox`), many
programs at a time. The code rewards (`r1.rewards.code`) and the HumanEval task use it.

Tests come from the example's `meta` in one of two forms:
- HumanEval: ``{"test": "def check(candidate): ...", "entry_point": "f", "prompt": ...}``
  (the program is prompt-if-needed + code + test + ``check(f)``; one run);
- stdin/stdout: ``{"io_tests": [{"input": "...", "output": "..."}, ...]}`` (one run per
  case; whitespace at line ends and the end is ignored).
"""

from __future__ import annotations

import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1.sandbox import execute

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str | None:
    """The last fenced code block (preferring python/py/untagged ones); None if there is none."""
    blocks = _FENCE.findall(completion)
    if not blocks:
        return None
    py = [code for lang, code in blocks if lang.lower() in ("", "python", "py", "python3")]
    return (py or [code for _, code in blocks])[-1]


def same_program(a: str | None, b: str | None) -> bool:
    """The same code, formatting, comments and docstring quoting aside (their syntax trees are
    equal); texts that do not parse are compared with whitespace collapsed."""
    import ast

    if a is None or b is None:
        return False
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return " ".join(a.split()) == " ".join(b.split())


def humaneval_program(code: str, meta: dict[str, Any], nonce: str = "") -> str:
    """code + test + check(entry_point); the prompt (signature, imports) goes first when the
    code does not define the entry point itself. With a nonce, the program prints it after
    the check, so that exiting early with status 0 (``sys.exit(0)`` in the solution) does
    not count as passing."""
    entry = meta["entry_point"]
    defines = re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    head = "" if defines else meta.get("prompt", "")
    if defines and meta.get("prompt"):  # keep the prompt's imports (typing, math, ...)
        head = "".join(line + "\n" for line in meta["prompt"].splitlines()
                       if line.startswith(("import ", "from ")))
    done = f"\nprint({nonce!r}, flush=True)\n" if nonce else ""
    return f"{head}{code}\n\n{meta['test']}\n\ncheck({entry})\n{done}"


def _same_output(got: str, want: str) -> bool:
    norm = lambda s: "\n".join(line.rstrip() for line in s.strip().splitlines())  # noqa: E731
    return norm(got) == norm(want)


def _jobs(code: str, meta: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(program, stdin, expected stdout or None) for one completion."""
    if "test" in meta and "entry_point" in meta:
        nonce = f"r1-tests-passed-{secrets.token_hex(8)}"
        return [(humaneval_program(code, meta, nonce), "", nonce)]
    cases = meta.get("io_tests") or []
    return [(code, str(c.get("input", "")), str(c.get("output", ""))) for c in cases]


def _passed(job: tuple[str, str, str | None], limits: dict[str, Any]) -> bool:
    program, stdin, want = job
    r = execute(program, stdin=stdin, **limits)
    if not r.ok:
        return False
    if want is not None and want.startswith("r1-tests-passed-"):
        return r.stdout.rstrip().endswith(want)
    return want is None or _same_output(r.stdout, want)


def pass_fractions(codes: list[str | None], metas: list[dict[str, Any]], workers: int | None = None,
                   **limits: Any) -> list[float]:
    """Fraction of tests passed per program (0 for None/no tests), all runs in one pool."""
    per = [_jobs(code, meta) if code is not None else [] for code, meta in zip(codes, metas)]
    jobs = [(i, job) for i, js in enumerate(per) for job in js]
    totals = [len(js) for js in per]
    passed = [0] * len(codes)
    workers = workers or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each run is a subprocess: threads just wait
        for (i, _), ok in zip(jobs, pool.map(lambda j: _passed(j[1], limits), jobs)):
            passed[i] += ok
    return [p / t if t else 0.0 for p, t in zip(passed, totals)]


def run_tests(code: str | None, meta: dict[str, Any], **limits: Any) -> float:
    """Fraction of one program's tests that pass."""
    return pass_fractions([code], [meta], workers=1, **limits)[0]

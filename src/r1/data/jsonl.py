"""JSONL, the one reader and writer: user data (`read_jsonl`: errors name the file, the line
and the field) and the logs r1 appends to itself (`read_log`: metrics, samples, rollouts,
which a killed run may leave with a torn last line)."""

from __future__ import annotations

import json
from pathlib import Path

from r1.errors import R1Error


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise R1Error(f"data file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise R1Error(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise R1Error(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            for field in required:
                if field not in row:
                    raise R1Error(f"{path}:{lineno}: missing field {field!r}")
            rows.append(row)
    if not rows:
        raise R1Error(f"data file {path} has no records")
    return rows


def read_log(path: str | Path) -> list[dict]:
    """The rows of a JSONL log r1 appends to (metrics.jsonl, samples.jsonl, ...): [] when it
    is not there yet; a torn last line (a run killed while writing) is dropped; any other bad
    line is an R1Error naming the file and the line, never a silent truncation."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                break
            raise R1Error(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); this log was "
                          "written by r1 and edited or damaged since") from None
    return rows


def write_jsonl_atomic(path: str | Path, rows: list[dict]) -> None:
    """Write all rows to a temporary file beside `path`, then rename it into place."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

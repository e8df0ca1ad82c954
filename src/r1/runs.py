"""Run folders and JSONL: the one reader and writer of r1's files, below everything that writes them.

* `read_jsonl`: user data (errors name the file, the line and the field); `read_log`: the logs
  r1 appends to itself (metrics, samples, rollouts), which a killed run may leave with a torn
  last line; `write_jsonl_atomic`: a whole file at once, renamed into place.
* `claim_output`: the folder of a sampling command (`r1 eval`, `r1 generate`) holds in
  `config.yaml` the settings that decide its numbers. A folder that already holds work is
  continued only with `--resume` and the same settings; a run into it without `--resume` is
  refused (the rule of `r1 zero`, `r1 sft` and the rest).
* `BatchLog`: problems are sampled in fixed batches (batch b holds problems [b*B, (b+1)*B)
  and samples with its own seed); each finished batch is appended and flushed to
  `samples.jsonl`; reopened, the log keeps only complete batches (a killed run's partial batch
  and torn last line are redone), so a resumed run gives exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

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


def claim_output(out: Path, settings: dict, *, resume: bool, what: str) -> bool:
    """Make `out` the folder of this run (writing `config.yaml`); True when it continues one."""
    saved = out / "config.yaml"
    old = yaml.safe_load(saved.read_text()) if saved.is_file() else None
    if old is None and (out / "samples.jsonl").is_file():
        raise R1Error(f"{out} holds samples.jsonl without the config.yaml that says how they were sampled: "
                      "choose another --out")
    if old is not None:
        if not resume:
            raise R1Error(f"{out} already holds {what}: pass --resume to continue it, or choose another --out")
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise R1Error(f"{out} holds {what} with other settings ({', '.join(diff)}): "
                          "use another --out, or the same settings to resume it")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    tmp.replace(saved)
    return old is not None


class BatchLog:
    """`samples` rows per example, written batch by batch to `path` (see the module)."""

    def __init__(self, path: Path, examples: Sequence[Any], samples: int, batch_size: int):
        self.path = Path(path)
        self.batches = [list(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
        have: dict[str, set] = defaultdict(set)
        rows = read_log(self.path)  # a torn last line (killed run) is dropped: that batch is redone
        for r in rows:
            have[str(r.get("id"))].add(r.get("sample"))
        self.complete = [all(len(have[str(ex.id)]) >= samples for ex in b) for b in self.batches]
        kept = {str(ex.id) for b, done in zip(self.batches, self.complete) if done for ex in b}
        self.rows = [r for r in rows if str(r.get("id")) in kept]  # a batch is all or nothing
        write_jsonl_atomic(self.path, self.rows)
        self.problems_done = len(kept)

    def pending(self) -> Iterator[tuple[int, list[Any]]]:
        """(batch number, its examples) for each batch still to sample."""
        for b, (batch, done) in enumerate(zip(self.batches, self.complete)):
            if not done:
                yield b, batch

    def append(self, rows: list[dict]) -> None:
        """A finished batch's rows, flushed before the next batch starts."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()
        self.rows += rows

"""Rejection sampling as in R1's stage 3: keep the generated samples that are right and
readable, drop the rest with a reason.

A sample (one JSONL row, as `r1 generate` writes them) has at least ``id`` (the prompt's
id), ``gold`` and ``completion`` (``<think>reasoning</think> answer``); ``tokens`` is used
for the length check when present (else words). Checks, in order; the first that fails
names the reason:

``unverified``  the answer (``<answer>`` tags, else the last ``\\boxed{}``, else the last
                number) does not match ``gold`` under the task's verifier
``malformed``   not exactly one ``<think>…</think>`` before a non-empty answer, or
                ``<answer>`` tags present but not in the strict R1 form
``language``    language consistency of the reasoning below ``min_language``
``overlong``    more than ``max_tokens`` tokens
``repetition``  repeated word n-grams above ``max_repetition`` (a loop)
``duplicate``   the same reasoning and answer as a kept sample of the same prompt
``quota``       the prompt already has ``max_per_prompt`` kept samples
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r1.config import FilterConfig
from r1.data.prompts import is_strict_format
from r1.data.reasoning import split_reasoning
from r1.data.tasks import get_task
from r1.data.tasks.base import Example
from r1.data.verify import answers_match
from r1.errors import R1Error
from r1.rewards.language import language_consistency
from r1.rewards.shaping import ngram_repetition
from r1.runs import read_jsonl, write_jsonl_atomic

REASONS = ("unverified", "malformed", "language", "overlong", "repetition", "duplicate", "quota")


@dataclass
class FilterResult:
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # each with "reason"

    def counts(self) -> dict[str, int]:
        c = Counter(r["reason"] for r in self.dropped)
        return {"kept": len(self.kept), **{r: c.get(r, 0) for r in REASONS}}


def well_formed(completion: str) -> bool:
    if "<answer>" in completion or "</answer>" in completion:
        return is_strict_format(completion)
    body = completion.strip()
    if body.count("<think>") > 1 or body.count("</think>") != 1:
        return False
    if "<think>" in body and not body.startswith("<think>"):
        return False
    reasoning, rest = split_reasoning(body)
    return bool(reasoning) and bool(rest)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _verifier(cfg: FilterConfig):
    if cfg.task:
        task = get_task(cfg.task, {})

        def check(row: dict) -> bool:
            ex = Example(str(row.get("id")), str(row.get("problem", "")), str(row.get("gold", "")),
                         meta=row.get("meta") or {})
            return bool(task.score(row["completion"], ex))
    else:
        def check(row: dict) -> bool:  # <answer> tags, then \\boxed{}, then Math-Verify's extraction
            return answers_match(str(row.get("gold", "")), split_reasoning(row["completion"])[1])
    return check


def reject(rows: list[dict[str, Any]], cfg: FilterConfig) -> FilterResult:
    """Apply the checks to every row (in order), deduplicate, cap per prompt."""
    verify = _verifier(cfg)
    out = FilterResult()
    seen: dict[str, set[str]] = {}
    per_prompt: Counter = Counter()
    for row in rows:
        completion = str(row.get("completion", ""))
        reasoning, _ = split_reasoning(completion)
        length = row.get("tokens") if isinstance(row.get("tokens"), int) else len(completion.split())
        if cfg.verify and not verify(row):
            reason = "unverified"
        elif cfg.require_format and not well_formed(completion):
            reason = "malformed"
        elif language_consistency(reasoning, cfg.language) < cfg.min_language:
            reason = "language"
        elif cfg.max_tokens is not None and length > cfg.max_tokens:
            reason = "overlong"
        elif ngram_repetition(completion, cfg.ngram) > cfg.max_repetition:
            reason = "repetition"
        else:
            key = _normalise(completion)
            pid = str(row.get("id"))
            if key in seen.setdefault(pid, set()):
                reason = "duplicate"
            elif cfg.max_per_prompt is not None and per_prompt[pid] >= cfg.max_per_prompt:
                reason = "quota"
            else:
                seen[pid].add(key)
                per_prompt[pid] += 1
                out.kept.append(row)
                continue
        out.dropped.append({**row, "reason": reason})
    return out


def samples_file(path: str | Path) -> Path:
    """The samples a path names: a JSONL file, an `r1 filter` folder (its kept.jsonl) or an
    `r1 generate` folder (its samples.jsonl)."""
    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in ("kept.jsonl", "samples.jsonl") if (p / n).is_file()), None)
        if found is None:
            raise R1Error(f"{p} holds neither kept.jsonl (r1 filter) nor samples.jsonl (r1 generate)")
        return found
    return p


def filter_to(source: str | Path, out: Path, cfg: FilterConfig) -> tuple[FilterResult, int]:
    """`r1 filter`: the samples of `source` filtered into the folder `out`: kept.jsonl,
    dropped.jsonl (each with its reason), summary.json (the counts), config.yaml. Cheap and
    deterministic, so always redone whole. Returns (result, samples read)."""
    path = samples_file(source)
    rows = read_jsonl(path, required=("id", "completion"))
    if cfg.task is None:
        for i, row in enumerate(rows):
            if "gold" not in row:
                raise R1Error(f"{path}: record {i + 1} (id {row.get('id')!r}) has no 'gold' answer to verify against")
    res = reject(rows, cfg)
    write_jsonl_atomic(out / "kept.jsonl", res.kept)
    write_jsonl_atomic(out / "dropped.jsonl", res.dropped)
    settings = {"input": str(path), **cfg.model_dump()}
    (out / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (out / "summary.json").write_text(json.dumps({"input": str(path), "samples": len(rows), **res.counts()}, indent=1))
    return res, len(rows)

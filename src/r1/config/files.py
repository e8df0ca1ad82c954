"""Recipe files and `--set key=value` overrides: reading YAML, applying overrides to the
mapping, merging a recipe over its defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from r1.errors import R1Error


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise R1Error(f"--set {item!r}: expected key=value, e.g. --set optim.lr=1e-5")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise R1Error(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    key = key.strip()
    if key.startswith(("rewards.", "reward_params.")) and ":" in key:
        # a custom reward's name is a path (dots and slashes): rewards.<file.py:fn>[.param]
        head, rest = key.split(".", 1)
        name, colon, tail = rest.partition(":")
        fn, _, param = tail.partition(".")
        return [head, f"{name}{colon}{fn}"] + ([param] if param else []), value
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise R1Error(f"--set {item!r}: {part!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise R1Error(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise R1Error(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise R1Error(f"{path}: a recipe must be a mapping of sections")
    return data


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out

"""User code named in a setting: `path/to/file.py:function` or `package.module:function`, the
one way custom rewards and custom tools are loaded."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from r1.errors import R1Error


def load_function(spec: str, what: str) -> Callable:
    """The function `spec` names; `what` ("reward", "tool") names it in the one-line errors."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise R1Error(f"{what} {spec!r}: write it as path/to/file.py:function or package.module:function")
    if target.endswith(".py") or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise R1Error(f"{what} {spec!r}: no such file {path}")
        mod_name = f"r1_custom_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(mod_name)
        if module is None:
            s = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(s)
            try:
                s.loader.exec_module(module)
            except Exception as e:
                raise R1Error(f"{what} {spec!r}: importing {path} failed: {type(e).__name__}: {e}") from None
            sys.modules[mod_name] = module
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise R1Error(f"{what} {spec!r}: cannot import {target}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise R1Error(f"{what} {spec!r}: {target} has no function {attr!r}")
    return fn

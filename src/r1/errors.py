"""The one exception type that reaches the user as a clean one-line message.

Anything raised as `R1Error` is printed by the CLI as `error: <message>` and the
process exits with code 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class R1Error(Exception):
    """A problem with the user's input (config, data, model spec), not a bug."""


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad key of a pydantic error, e.g.
    ``config: optim.lr: Input should be a valid number``."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(first["loc"])) or "config"
    if first["type"] == "extra_forbidden":
        return f"config: unknown key {loc!r}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("missing",):
        return f"config: {loc}: missing"
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"config: {msg}{shown}" if loc == "config" else f"config: {loc}: {msg}{shown}"

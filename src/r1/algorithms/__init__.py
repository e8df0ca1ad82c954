"""Pure algorithm functions (tensors in, tensors out) in name registries."""

from collections.abc import Callable


def name_registry() -> tuple[dict[str, Callable], Callable[[str], Callable]]:
    """A fresh (table, register) pair: `@register("name")` adds a function to `table`."""
    table: dict[str, Callable] = {}

    def register(name: str):
        def wrap(fn):
            table[name] = fn
            return fn

        return wrap

    return table, register

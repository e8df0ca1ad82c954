"""The package graph is a ladder: imports go down it (or sideways within a rung), never in a
cycle, never to another package's private names. Read from the source (every import,
inside functions too), so a new arrow the wrong way fails here, not in a review."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "r1"

# top rung first; the README's "Architecture" and the design notes draw the same ladder
LADDER = [
    {"__main__", "cli"},
    {"pipeline"},
    {"trainers", "eval", "serve"},
    {"rollout", "rewards"},
    {"data"},
    {"models", "algorithms", "types", "config", "runs", "report", "tracking", "errors", "padding", "sandbox",
     "presets", "allocator", "plugins"},
]
RUNG = {unit: i for i, units in enumerate(LADDER) for unit in units}


def _unit(module: str) -> str:
    """r1.data.tasks.code -> data; r1.config -> config."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "r1"


def _imports() -> list[tuple[str, str, str, list[str]]]:
    """(file, importing unit, imported module, names) for every import of r1 in the source."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        module = ".".join(("r1", *rel.with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                    node.module.split(".")[0] == "r1":
                out.append((str(rel), _unit(module), node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                out += [(str(rel), _unit(module), a.name, []) for a in node.names if a.name.split(".")[0] == "r1"]
    return out


def test_every_unit_has_a_rung():
    units = {_unit(".".join(("r1", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"))
             for p in SRC.rglob("*.py")} - {"r1"}
    assert units <= set(RUNG), f"place {sorted(units - set(RUNG))} on the LADDER (and in the README)"


def test_imports_go_down_the_ladder():
    wrong = [(f, unit, target) for f, unit, target, _ in _imports()
             if _unit(target) not in ("r1", unit) and RUNG[_unit(target)] < RUNG[unit]]
    assert not wrong, "imports up the ladder:\n" + "\n".join(f"{f}: {u} -> {t}" for f, u, t in wrong)


def _circles(edges: dict[str, set[str]]) -> list[str]:
    """Every circle a depth-first walk of the graph `edges` meets, as 'a -> b -> a'."""
    seen, on_path, circles = set(), [], []

    def visit(u):
        if u in on_path:
            circles.append(" -> ".join(on_path[on_path.index(u):] + [u]))
            return
        if u in seen:
            return
        on_path.append(u)
        for v in sorted(edges[u]):
            visit(v)
        on_path.pop()
        seen.add(u)

    for u in sorted(edges):
        visit(u)
    return circles


def test_the_package_graph_has_no_cycle():
    edges = defaultdict(set)
    for _, unit, target, _ in _imports():
        if _unit(target) not in ("r1", unit):
            edges[unit].add(_unit(target))
    circles = _circles(edges)
    assert not circles, "import cycles between packages:\n" + "\n".join(circles)


def test_no_import_of_another_packages_private_names():
    private = [(f, target, n) for f, unit, target, names in _imports() for n in names
               if n.startswith("_") and _unit(target) != unit]
    assert not private, private


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these by concern: {long}"


def _module_of(path: Path) -> str:
    return ".".join(("r1", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def _file_graph() -> dict[str, set[str]]:
    """module -> the r1 modules it imports (inside functions too); `from pkg import sub` is an
    edge to the submodule, `from pkg import name` to the package."""
    modules = {_module_of(p) for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SRC.rglob("*.py")):
        me = _module_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                    node.module.split(".")[0] == "r1":
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "r1"]
            edges[me].update(t for t in targets if t in modules and t != me)
    return edges


def test_no_two_files_import_each_other_in_a_circle():
    circles = _circles(_file_graph())
    assert not circles, "files that import each other in a circle:\n" + "\n".join(circles)


def test_the_readme_draws_this_ladder_with_a_line_per_package():
    """README "Architecture": the ladder block lists LADDER's rungs in order, and every package
    of it has its one-line entry."""
    readme = (SRC.parents[1] / "README.md").read_text()
    section = readme.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1].strip().splitlines()
    rungs = [set(line.split("   ")[0].split()) for line in block]
    assert rungs == LADDER
    described = {line[3:].split("`", 1)[0] for line in section.splitlines() if line.startswith("- `")}
    described |= {"__main__"}  # on cli's line
    assert described == set(RUNG)

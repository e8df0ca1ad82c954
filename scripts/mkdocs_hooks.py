"""MkDocs hooks of r1's documentation site, run at build time: the configuration page gets the
reference that `r1.cli.reference` writes from the config models, and the list of the recipes
in `recipes/` with the comment each opens with."""

from __future__ import annotations

from pathlib import Path

REFERENCE = "<!-- r1:config-reference -->"
RECIPES = "<!-- r1:recipes -->"
ROOT = Path(__file__).resolve().parents[1]


def recipe_table() -> str:
    rows = ["| recipe | what it runs |", "|---|---|"]
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        head = []
        for line in lines:
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if not text.startswith(("r1 ", "accelerate ", "node ")):  # the usage lines
                head.append(text)
        what = " ".join(head).replace("|", "\\|") or "–"
        rows.append(f"| `{path.relative_to(ROOT)}` | {what} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if REFERENCE in markdown:
        from r1.cli.reference import config_reference

        markdown = markdown.replace(REFERENCE, config_reference())
    if RECIPES in markdown:
        markdown = markdown.replace(RECIPES, recipe_table())
    return markdown

"""The README and the documentation site: examples that run for a user, a configuration
reference that covers every key, and text that speaks of the product."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

import docs_examples
from r1.cli.reference import config_reference, missing_descriptions

ROOT = docs_examples.ROOT


def test_every_r1_line_in_the_readme_and_the_docs_matches_the_command_line():
    found = docs_examples.examples()
    pages = {ex.page for ex in found}
    assert len(found) >= 40 and "README.md" in pages and len(pages) >= 8, (len(found), sorted(pages))
    assert docs_examples.check(found) == []


def test_the_example_check_fails_on_a_misspelt_option_an_unknown_command_and_a_missing_file(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "--max-per-prompt 2" in readme
    page = tmp_path / "page.md"
    page.write_text(readme.replace("--max-per-prompt 2", "--max-per-promt 2", 1))
    problems = docs_examples.check([docs_examples.Example("page.md", e.line, e.args)
                                    for e in docs_examples.examples([page])])
    assert len(problems) == 1 and "--max-per-promt" in problems[0] and "No such option" in problems[0], problems

    bad = [docs_examples.Example("p.md", line, docs_examples.r1_args(line)) for line in (
        "r1 zeroo --steps 3",
        "r1 grpo recipes/no-such-recipe.yaml --out runs/x",
        "r1 serve --model runs/never-made",
        "r1 eval --samples many --benchmark gsm8k --model smollm2-135m",
    )]
    problems = docs_examples.check(bad)
    assert len(problems) == 4, problems
    assert "zeroo" in problems[0]
    assert "recipes/no-such-recipe.yaml" in problems[1] and "runs/never-made" in problems[2]
    assert "many" in problems[3]


def test_a_line_may_use_what_an_earlier_line_of_its_page_made():
    lines = ["r1 zero --out runs/mine", "r1 serve --model runs/mine/model"]
    ok = [docs_examples.Example("p.md", line, docs_examples.r1_args(line)) for line in lines]
    assert docs_examples.check(ok) == []
    assert len(docs_examples.check(ok[::-1])) == 1  # used before it is made


def test_shell_lines_join_continuations_and_find_r1_behind_launchers():
    text = "```bash\nr1 eval --model m \\\n    --benchmark gsm8k   # a comment\nls\n```\n"
    assert docs_examples.shell_lines(text) == ["r1 eval --model m      --benchmark gsm8k   # a comment", "ls"]
    assert docs_examples.r1_args("R1_API_KEY=x r1 serve --port 1") == ["serve", "--port", "1"]
    assert docs_examples.r1_args("accelerate launch --num_processes 2 -m r1 grpo a.yaml") == ["grpo", "a.yaml"]
    assert docs_examples.r1_args("python benchmarks/seed_study.py") is None


def test_every_config_field_has_a_description():
    assert missing_descriptions() == []

    class Bare(BaseModel):
        described: int = Field(1, description="a field with words")
        bare: int = 2

    assert missing_descriptions([Bare]) == ["Bare.bare"]


def test_the_reference_lists_every_key_of_every_recipe_kind():
    from r1.cli.reference import _recipe_kinds, _rows, _task_params

    text = config_reference()
    for _, _, model in _recipe_kinds():
        for key, _, _ in _rows(model):
            assert f"| `{key}` |" in text, key
    for name, params in _task_params():
        assert f"### `{name}`" in text
    assert "| `entropy.control` |" in text and "| `model.lora.r` |" in text and "| `max_per_prompt` |" in text
    from r1.rewards.registry import available

    for reward in available():
        assert f"| `{reward}` |" in text


def test_the_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 15
    for link in local:
        assert (ROOT / link).exists(), link
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert str(page.relative_to(ROOT / "docs")) in nav, page  # mkdocs --strict fails on it too


PROCESS_WORDS = [
    re.compile(r"\bsittings?\b", re.I),
    re.compile(r"\bissues? #?\d+", re.I),
    re.compile(r"\bthis machine\b", re.I),
    re.compile(r"\bquiet day\b", re.I),
    # a commit hash: 7-12 hex digits with at least one letter and one digit, standing alone
    re.compile(r"(?<![\w/.#-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}(?![\w/.-])"),
]


def _process_words(text: str) -> list[str]:
    return [m.group(0) for p in PROCESS_WORDS for m in p.finditer(text)]


def test_the_process_word_search_finds_what_it_looks_for():
    assert _process_words("measured in the second sitting, see issue 26 and 4c2d3f4 on this machine") == [
        "sitting", "issue 26", "this machine", "4c2d3f4"]
    assert _process_words("sha 0x1f2e3d4c, #1f2937, seed 1234567, deadbeef") == []


def _product_text() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "mkdocs.yml"] + sorted((ROOT / "docs").rglob("*.md"))
    files += [p for p in sorted((ROOT / "src").rglob("*")) if p.suffix in (".py", ".yaml", ".md", ".html", ".js", ".css")
              and ".egg-info" not in str(p)]
    files += sorted((ROOT / "recipes").rglob("*.yaml"))
    return files


def test_readme_docs_sources_and_help_speak_of_the_product():
    found = {str(p.relative_to(ROOT)): _process_words(p.read_text(encoding="utf-8")) for p in _product_text()}
    assert {k: v for k, v in found.items() if v} == {}

    from typer.main import get_command

    from r1.cli.main import app

    runner = CliRunner()
    root = get_command(app)
    commands = [[]] + [[name] for name in root.commands] + [["eval", "compare"]]
    for args in commands:
        result = runner.invoke(app, args + ["--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (args, result.output)
        assert _process_words(result.output) == [], (args, _process_words(result.output))


def test_a_benchmark_that_cannot_be_downloaded_says_how_to_give_a_local_file(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    from r1.data.tasks import get_task
    from r1.errors import R1Error

    task = get_task("gsm8k", {"dataset": "r1-tests/no-such-dataset", "split": "test"})
    with pytest.raises(R1Error) as e:
        task.all_examples()
    assert "r1-tests/no-such-dataset" in str(e.value) and "--data" in str(e.value) and "Hub" in str(e.value)


def test_the_site_lists_every_shipped_recipe_with_what_it_runs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    table = hooks.recipe_table().splitlines()[2:]
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert len(table) == len(recipes) >= 10
    for row, path in zip(table, recipes):
        assert row.startswith(f"| `{path.relative_to(ROOT)}` | ") and not row.endswith("| – |"), row
    page = hooks.on_page_markdown(f"a\n{hooks.RECIPES}\n{hooks.REFERENCE}\n", None, None, None)
    assert hooks.RECIPES not in page and hooks.REFERENCE not in page and "| `rollout.group_size` |" in page

"""An evaluation's report.md and plots, and `r1 eval compare`."""

from __future__ import annotations

import json
from pathlib import Path

from r1.errors import R1Error
from r1.report import figure


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def write_eval_report(out: Path, result: dict, rows: list[dict]) -> None:
    plots = out / "plots"
    with figure(plots / "response_length_hist.png", f"{result['benchmark']}: response lengths", size=(6, 3.5),
                grid=False) as ax:
        ax.hist([r["tokens"] for r in rows] or [0], bins=30, color="C0")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("samples")
    levels = result["breakdown"].get("level")
    if levels:
        with figure(plots / "accuracy_by_level.png", f"{result['benchmark']}: accuracy by level", size=(6, 3.5),
                    grid=False) as ax:
            names = list(levels)
            ax.bar(names, [levels[n]["pass@1"] for n in names], color="C1")
            ax.set_xlabel("level")
            ax.set_ylabel("pass@1")
            ax.set_ylim(0, 1)

    m, c = result["metrics"], result["config"]
    lines = [
        f"# {result['benchmark']}: {result['model']}",
        "",
        f"{m['problems']} problems × {m['samples_per_problem']} samples, temperature {c['temperature']}, "
        f"top-p {c['top_p']}, max {c['max_new_tokens']} new tokens, seed {c['seed']}.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in m.items()]
    for key, groups in result["breakdown"].items():
        lines += ["", f"## By {key}", "", f"| {key} | problems | pass@1 |", "|---|---|---|"]
        lines += [f"| {g} | {v['problems']} | {v['pass@1']:.3f} |" for g, v in groups.items()]
    lines += ["", "![lengths](plots/response_length_hist.png)"]
    if levels:
        lines += ["", "![by level](plots/accuracy_by_level.png)"]
    wrong = [r for r in rows if not r["correct"]][:2]
    right = [r for r in rows if r["correct"]][:2]
    for title, chosen in (("Correct samples", right), ("Wrong samples", wrong)):
        if chosen:
            lines += ["", f"## {title}", ""]
            for r in chosen:
                lines += [f"**{r['id']}** gold `{r['gold']}`, extracted `{r['answer']}`", "", "```",
                          r["completion"].strip()[:1500], "```", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def load_results(path: str | Path) -> dict:
    """An evaluation folder's summary.json (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "summary.json"
    if not p.is_file():
        raise R1Error(f"{path} has no summary.json: run `r1 eval ... --out {path}` first")
    return json.loads(p.read_text())


def compare_table(dirs: list[str]) -> str:
    """A markdown table of every metric, one column per evaluation, and the change B - A."""
    results = [load_results(d) for d in dirs]
    keys: list[str] = []
    for r in results:
        keys += [k for k in r["metrics"] if k not in keys]
    head = ["metric"] + [f"{Path(d).name} ({r['model']})" for d, r in zip(dirs, results)]
    if len(results) == 2:
        head.append("change")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        vals = [r["metrics"].get(k) for r in results]
        cells = [k] + [_fmt(v) if v is not None else "–" for v in vals]
        if len(results) == 2:
            a, b = vals
            cells.append(f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

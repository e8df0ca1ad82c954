"""The R1 pipeline's report: every stage's metrics side by side (report.md, report.html with
the plot inlined, stages.png)."""

from __future__ import annotations

from pathlib import Path

from r1.report import figure


def cell(m: dict, key: str, pct: bool) -> str:
    """One figure of the stage table; accuracy with its standard error over problems."""
    if key not in m:
        return "–"
    if not pct:
        return f"{m[key]:.1f}"
    se = f" ± {100 * m[key + '_se']:.1f}" if key + "_se" in m else ""
    return f"{100 * m[key]:.1f}%{se}"


def write_pipeline_report(out: Path, base: dict, stages: list[dict]) -> None:
    """report.md and report.html: every stage's metrics side by side, plus a readability plot."""
    import base64

    cols = [("base", base)] + [(s["name"], s.get("metrics", {})) for s in stages]
    keys = [("pass@1", "accuracy (pass@1)", True), ("format_rate", "format rate", True),
            ("language_consistency", "language consistency", True), ("response_length_mean", "mean length (tokens)", False)]
    head = "| | " + " | ".join(n for n, _ in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    body = ""
    for key, label, pct in keys:
        cells = [cell(m, key, pct) for _, m in cols]
        body += f"| {label} | " + " | ".join(cells) + " |\n"
    with figure(out / "stages.png", size=(11, 3.2), ncols=3) as axes:
        for ax, (key, label, _) in zip(axes, keys[:3]):
            ax.bar([n for n, _ in cols], [m.get(key, 0.0) for _, m in cols], color="tab:blue",
                   yerr=[m.get(key + "_se", 0.0) for _, m in cols], capsize=3)
            ax.set(title=label, ylim=(0, 1))
            ax.tick_params(axis="x", rotation=30)
    stages_md = "".join(f"- `{s['name']}` ({s['kind']}): input `{s['input']}`, status {s['status']}\n" for s in stages)
    md = (f"# R1 pipeline\n\n{stages_md}\nEvaluated on the task's held-out set with the pipeline's prompt.\n\n"
          f"{head}{body}\n![stages](stages.png)\n")
    (out / "report.md").write_text(md)
    rows_html = "".join("<tr><td>" + label + "</td>" + "".join(
        f"<td>{cell(m, key, pct)}</td>" for _, m in cols)
        + "</tr>" for key, label, pct in keys)
    img = base64.b64encode((out / "stages.png").read_bytes()).decode()
    (out / "report.html").write_text(
        "<!doctype html><meta charset=utf-8><title>R1 pipeline</title><h1>R1 pipeline</h1>"
        "<table border=1 cellpadding=4><tr><th></th>" + "".join(f"<th>{n}</th>" for n, _ in cols) + "</tr>"
        + rows_html + f"</table><p><img src='data:image/png;base64,{img}'></p>")

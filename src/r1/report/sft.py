"""An SFT run's report: the loss curve, report.md and summary.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from r1.report import figure
from r1.runs import read_log


def write_sft_report(out: Path, model: str, total_steps: int, stats: dict) -> dict:
    rows = read_log(out / "metrics.jsonl")
    losses = [r["loss"] for r in rows]
    with figure(out / "plots" / "loss.png", "SFT loss", size=(6, 3.5)) as ax:
        ax.plot([r["step"] for r in rows], losses, color="tab:blue")
        ax.set(xlabel="step", ylabel="loss (assistant tokens)")
    first = statistics.fmean(losses[: max(1, len(losses) // 10)]) if losses else float("nan")
    last = statistics.fmean(losses[-max(1, len(losses) // 10):]) if losses else float("nan")
    summary = {"model": model, "steps": total_steps, **stats, "loss_first": first, "loss_last": last,
               "train_seconds": sum(r.get("time/step", 0.0) for r in rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(
        f"# SFT run\n\nModel `{model}` → `model/`; {total_steps} steps.\n\n"
        f"| data | |\n|---|---|\n| conversations | {stats['conversations']} |\n"
        f"| dropped (no assistant token within max_length) | {stats['dropped_no_assistant_tokens']} |\n"
        f"| packed rows | {stats['rows']} ({100 * stats['fill']:.0f}% filled) |\n"
        f"| tokens / assistant tokens | {stats['tokens']} / {stats['assistant_tokens']} |\n\n"
        f"Loss (mean over assistant tokens): first 10% of steps {first:.3f}, last 10% {last:.3f}.\n\n"
        "![loss](plots/loss.png)\n")
    return summary

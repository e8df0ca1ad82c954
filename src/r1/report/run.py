"""A training run's readable artefacts: plots/*.png, report.md and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from r1.report import figure
from r1.report.card import write_model_card
from r1.runs import read_log

SUMMARY_KEYS = ("pass@1", "pass@1_se", "format_rate", "format_rate_se", "lenient_pass@1", "lenient_pass@1_se",
                "response_length_mean", "reflection_rate", "eos_rate")
TOOL_KEYS = ("tool_use_rate", "tool_calls", "tool_error_rate", "episode_turns")  # with tools


def _smooth(values: list[float], k: int = 5) -> list[float]:
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - k + 1) : i + 1] if v is not None]
        out.append(sum(window) / len(window) if window else float("nan"))
    return out


def _points(ax, history: list[dict], *lines: tuple[str, str, str, str]) -> None:
    """The held-out evaluations' figures: one (key, style, colour, label) line each."""
    for key, style, color, label in lines if history else ():
        ax.plot([h["step"] for h in history], [h[key] for h in history], style, color=color, label=label)


def write_plots(out: Path, rows: list[dict], history: list[dict]) -> list[Path]:
    plots, steps, written = out / "plots", [r["step"] for r in rows], []

    def series(key):
        return [r.get(key) for r in rows]

    with figure(plots / "reward.png", None, size=(7, 6.5), ncols=1, rows=2, written=written) as (ax, low):
        ax.set_title("Reward and accuracy during GRPO")
        ax.grid(alpha=0.3)
        entropy_panel(low, steps, series)
        if rows:
            ax.plot(steps, series("reward"), alpha=0.3, color="C0")
            ax.plot(steps, _smooth(series("reward")), color="C0", label="reward (train, mean total)")
            ax.plot(steps, _smooth(series("accuracy")), color="C1", label="accuracy (train rollouts)")
            ax.plot(steps, _smooth(series("format_rate")), color="C2", label="format rate (train rollouts)")
        _points(ax, history, ("pass@1", "o-", "C3", "held-out pass@1"),
                ("format_rate", "s--", "C4", "held-out format rate"))
        ax.set_xlabel("step")
        ax.legend(fontsize=8)

    with figure(plots / "entropy.png", None, written=written) as ax:
        ax.set_title("Policy entropy and its control")
        ax.grid(alpha=0.3)
        entropy_panel(ax, steps, series)

    for key, color, title, ylabel, name in (
            ("response_length_mean", "C0", "Mean response length per step", "tokens", "response_length.png"),
            ("reflection_rate", "C5", 'Reflection words ("wait", "verify", "check again", ...)',
             "share of completions", "reflection.png")):
        with figure(plots / name, title, written=written) as ax:
            if rows:
                ax.plot(steps, series(key), alpha=0.3, color=color)
                ax.plot(steps, _smooth(series(key)), color=color)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)

    # R1-Zero's signature: accuracy and thinking length rising together, on one figure
    with figure(plots / "signature.png", "Accuracy and response length", written=written) as ax:
        if history:
            ax.plot([h["step"] for h in history], [h["pass@1"] for h in history], "o-", color="C3",
                    label="held-out pass@1")
        ax.set_xlabel("step")
        ax.set_ylabel("held-out accuracy", color="C3")
        ax.set_ylim(0, 1)
        ax2 = ax.twinx()
        if rows:
            ax2.plot(steps, _smooth(series("response_length_mean")), color="C0",
                     label="mean response length (train)")
        if history:
            ax2.plot([h["step"] for h in history], [h["response_length_mean"] for h in history], "s--", color="C0",
                     alpha=0.6, label="mean response length (held-out)")
        ax2.set_ylabel("tokens", color="C0")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")

    if any("tool_use_rate" in r for r in rows):  # episodes with tools: how the calling was learnt
        with figure(plots / "tools.png", "Tool use during GRPO", written=written) as ax:
            names = sorted({k for r in rows for k in r if k.startswith("tool_calls/")})
            ax.plot(steps, series("accuracy"), "-", color="C1", label="accuracy (train rollouts)")
            ax.plot(steps, series("tool_use_rate"), "-", color="C0", label="episodes with a call (train)")
            for i, key in enumerate(names):
                ax.plot(steps, [r.get(key, 0.0) for r in rows], "--", color=f"C{i + 4}",
                        label=f"{key.split('/', 1)[1]} calls per episode (train)")
            ax.plot(steps, series("tool_error_rate"), ":", color="C3", label="calls that failed (train)")
            _points(ax, [h for h in history if "tool_use_rate" in h], ("pass@1", "o", "C1", "held-out pass@1"),
                    ("tool_use_rate", "s", "C0", "held-out episodes with a call"))
            ax.set_xlabel("step")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=7)

    buckets = accuracy_by_length(out)
    with figure(plots / "accuracy_by_length.png", "Accuracy by response length", written=written) as ax:
        for i, (tag, rows_) in enumerate(buckets.items()):
            if rows_:
                xs = [f"{lo}–{hi}" for lo, hi, _, _ in rows_]
                ax.plot(range(len(xs)), [acc for _, _, acc, _ in rows_], "o-", color=f"C{i}", label=tag)
                ax.set_xticks(range(len(xs)), xs, fontsize=7)
        ax.set_xlabel("response length (tokens, quartiles of each evaluation)")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1)
        if any(buckets.values()):
            ax.legend(fontsize=8)
    return written


def entropy_panel(ax, steps: list[int], series) -> None:
    """The policy's per-token entropy per step (nats, at the sampling temperature; steps that
    trained no row leave a gap), with the sampling temperature and the entropy bonus's
    coefficient on a second axis where they moved."""
    entropy = [float("nan") if v is None else v for v in series("entropy")]
    ax.plot(steps, entropy, "o-", ms=2.5, color="C6", label="entropy (nats/token, loss rows)")
    ax.set_xlabel("step")
    ax.set_ylabel("entropy (nats)", color="C6")
    ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0]
    moved = [(k, c, label) for k, c, label in (("temperature", "C1", "sampling temperature"),
                                                ("entropy_coef", "C3", "entropy bonus coefficient"))
             if len({v for v in series(k) if v is not None}) > 1]
    if moved:
        twin = ax.twinx()
        for key, color, label in moved:
            twin.plot(steps, series(key), "--", color=color, label=label)
        twin.set_ylabel(" / ".join(label for _, _, label in moved))
        handles += twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")


def _eval_rows(out: Path, tag: str) -> list[dict]:
    return read_log(out / "eval" / f"heldout_{tag}.jsonl")


def _eval_tags(out: Path) -> list[str]:
    """before, the mid-run evaluations in order, after (those that exist)."""
    mids = sorted(p.stem.removeprefix("heldout_") for p in (out / "eval").glob("heldout_step*.jsonl"))
    return [t for t in ["before", *mids, "after"] if (out / "eval" / f"heldout_{t}.jsonl").is_file()]


def accuracy_by_length(out: Path, buckets: int = 4) -> dict[str, list[tuple[int, int, float, int]]]:
    """Per evaluation (before, after): [(min tokens, max tokens, accuracy, samples)] over
    length quartiles of that evaluation's samples."""
    result = {}
    for tag in ("before", "after"):
        rows = sorted(_eval_rows(out, tag), key=lambda r: r.get("tokens", 0))
        if not rows:
            continue
        size = max(1, -(-len(rows) // buckets))
        result[tag] = [(part[0]["tokens"], part[-1]["tokens"], sum(r["correct"] for r in part) / len(part), len(part))
                       for part in (rows[i:i + size] for i in range(0, len(rows), size))]
    return result


def _samples(out: Path, tag: str, k: int = 3) -> list[dict]:
    return [r for r in _eval_rows(out, tag) if r["sample"] == 0][:k]


def _same_problem_over_time(out: Path) -> list[str]:
    """One held-out problem's first sample at the start, the middle and the end of training."""
    tags = _eval_tags(out)
    if len(tags) < 2:
        return []
    picked = [tags[0], tags[len(tags) // 2], tags[-1]] if len(tags) > 2 else tags
    first = _samples(out, picked[0], 1)
    if not first:
        return []
    pid = first[0]["id"]
    lines = [f"## One held-out problem through training: {first[0]['question']} (gold: {first[0]['gold']})", ""]
    for tag in dict.fromkeys(picked):
        row = next((r for r in _eval_rows(out, tag) if r["id"] == pid and r["sample"] == 0), None)
        if row:
            lines += [f"- {tag} ({'correct' if row['correct'] else 'wrong'}, {row.get('tokens', '?')} tokens):", "",
                      "```", row["completion"].strip(), "```", ""]
    return lines


def length_signature(rows: list[dict], window: int = 5) -> dict:
    """R1-Zero's length signature in the training rollouts: the lowest `window`-step rolling
    mean of the response length, and the mean over the last tenth of the steps."""
    lengths = [r["response_length_mean"] for r in rows if r.get("response_length_mean") is not None]
    if not lengths:
        return {}
    rolling = _smooth(lengths, window)
    low = min(range(len(rolling)), key=rolling.__getitem__)
    tail = lengths[-max(1, len(lengths) // 10):]
    last = sum(tail) / len(tail)
    return {"low": rolling[low], "low_step": low + 1, "last_tenth": last,
            "ratio": last / rolling[low] if rolling[low] else None, "window": window}


def _with_se(h: dict, key: str) -> str:
    se = h.get(f"{key}_se")
    return f"{h[key]:.3f}" if se is None else f"{h[key]:.3f} ± {se:.3f}"


def entropy_section(rows: list[dict], cfg) -> list[str]:
    """report.md's entropy lines: where it started and ended, how the control moved, and the
    collapse warning (the same test as the trainer's log)."""
    from r1.algorithms.entropy import collapse, collapse_message

    measured = [(r["step"], r["entropy"]) for r in rows if isinstance(r.get("entropy"), (int, float))]
    if not measured:
        return []
    ent = cfg.entropy
    lines = ["## Entropy", "",
             f"Policy entropy (nats per completion token, at the sampling temperature, over the rows in the loss): "
             f"{measured[0][1]:.3f} at step {measured[0][0]}, {measured[-1][1]:.3f} at step {measured[-1][0]}; "
             f"lowest {min(h for _, h in measured):.3f}."]
    if ent.control != "none":
        key = "temperature" if ent.control == "temperature" else "entropy_coef"
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            lines[-1] += (f" Control `{ent.control}` (target {ent.target} nats): {key} {values[0]:.3g} → "
                          f"{values[-1]:.3g} (range {min(values):.3g}–{max(values):.3g}).")
    found = collapse([r.get("entropy") for r in rows], ent.collapse_fraction, ent.collapse_within)
    if found:
        lines += ["", "**Warning:** " + collapse_message(found, ent.collapse_fraction, ent.collapse_within,
                                                         ent.control)]
    return lines + [""]


def write_run_report(out: Path, cfg, history: list[dict]) -> dict:
    rows = read_log(out / "metrics.jsonl")
    write_plots(out, rows, history)
    keys = SUMMARY_KEYS + tuple(k for k in TOOL_KEYS if history and k in history[0])
    keys += tuple(sorted({k for h in history for k in h if k.startswith("tool_calls/")}))
    before = {k: history[0].get(k, 0.0 if k.startswith("tool_calls/") else None) for k in keys} if history else {}
    after = {k: history[-1].get(k, 0.0 if k.startswith("tool_calls/") else None) for k in keys} \
        if len(history) > 1 else {}
    seconds = sum(r.get("time/step", 0.0) for r in rows)
    summary = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "steps": cfg.train.steps,
        "heldout_problems": history[0]["problems"] if history else 0,
        "heldout_samples_per_problem": cfg.eval.samples,
        "heldout_before": before,
        "heldout_after": after,
        "heldout_history": [{k: h.get(k) for k in ("step",) + keys} for h in history],
        "train_seconds": seconds,
        "length_signature": length_signature(rows),
        "final_step": rows[-1] if rows else {},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_model_card(out, cfg, summary)

    lines = [
        f"# GRPO run: {cfg.model.name} on {cfg.task.name}",
        "",
        f"{cfg.train.steps} steps, {cfg.rollout.prompts_per_step} prompts x {cfg.rollout.group_size} "
        f"completions per step, lr {cfg.optim.lr}, beta {cfg.algorithm.beta}, rewards "
        + ", ".join(f"{k}×{v}" for k, v in cfg.rewards.items())
        + f". Training time (all stages): {seconds / 60:.1f} min.",
        "",
        f"## Held-out ({summary['heldout_problems']} problems × {cfg.eval.samples} samples, "
        f"T={cfg.eval.temperature})",
        "",
        "| | pass@1 | format rate | lenient pass@1 | mean length (tokens) | reflection rate | ends with EOS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, h in (("before", before), ("after", after)):
        if h:
            eos = "–" if h.get("eos_rate") is None else f"{h['eos_rate']:.3f}"
            lines.append(f"| {name} | {_with_se(h, 'pass@1')} | {_with_se(h, 'format_rate')} | "
                         f"{_with_se(h, 'lenient_pass@1')} | {h['response_length_mean']:.1f} | "
                         f"{h['reflection_rate']:.3f} | {eos} |")
    lines += [
        "",
        "± one standard error over the problems (each problem's samples averaged first). Accuracy needs the answer inside `<answer>` tags and verified by the task; lenient accuracy "
        "takes the last number (or `\\boxed{}`) anywhere, tags or not. Ends with EOS: the sample ended with "
        "EOS by itself, at most `rollout.stop_grace_tokens` tokens after a stop string (what tools without r1's "
        "stop strings see); text other than whitespace after `</answer>` fails the format.",
        "",
    ]
    if after and "tool_use_rate" in after:
        lines += ["| held-out episodes | with a call | calls per episode | turns per episode | calls that failed |",
                  "|---|---|---|---|---|"]
        for name, h in (("before", before), ("after", after)):
            lines.append(f"| {name} | {h['tool_use_rate']:.3f} | {h['tool_calls']:.2f} | {h['episode_turns']:.2f} | "
                         f"{h['tool_error_rate']:.3f} |")
        per_tool = [k for k in after if k.startswith("tool_calls/")]
        lines += ["", "Calls per episode by tool, before → after: " + ", ".join(
            f"{k.split('/', 1)[1]} {before[k]:.2f} → {after[k]:.2f}" for k in per_tool) + ".", "",
                  "![tool use](plots/tools.png)", ""]
    sig = summary["length_signature"]
    if sig.get("ratio"):
        lines += [f"Response length in the training rollouts: lowest {sig['window']}-step mean {sig['low']:.1f} "
                  f"tokens (step {sig['low_step']}), mean over the last tenth of the steps {sig['last_tenth']:.1f}: "
                  f"**{sig['ratio']:.2f}×** its low (R1-Zero's signature is a rise with accuracy, ≥ 1.5×).", ""]
    lines += entropy_section(rows, cfg)
    lines += [
        "## Plots",
        "",
        "![reward](plots/reward.png)",
        "",
        "![entropy](plots/entropy.png)",
        "",
        "![response length](plots/response_length.png)",
        "",
        "![reflection](plots/reflection.png)",
        "",
        "![accuracy and response length](plots/signature.png)",
        "",
        "![accuracy by response length](plots/accuracy_by_length.png)",
        "",
        "## Sample completions, before and after",
        "",
    ]
    for b, a in zip(_samples(out, "before"), _samples(out, "after")):
        lines += [
            f"**{b['question']}** (gold: {b['gold']})",
            "",
            f"- before ({'correct' if b['correct'] else 'wrong'}):",
            "",
            "```",
            b["completion"].strip(),
            "```",
            f"- after ({'correct' if a['correct'] else 'wrong'}):",
            "",
            "```",
            a["completion"].strip(),
            "```",
            "",
        ]
    by_length = accuracy_by_length(out)
    if by_length:
        lines += ["## Accuracy by response length (held-out, length quartiles)", "",
                  "| evaluation | tokens | accuracy | samples |", "|---|---|---|---|"]
        lines += [f"| {tag} | {lo}–{hi} | {acc:.3f} | {n} |" for tag, rows_ in by_length.items()
                  for lo, hi, acc, n in rows_]
        lines.append("")
    lines += _same_problem_over_time(out)
    if (out / "diagnosis.md").is_file():  # the first steps had no learning signal: why
        lines += ["", (out / "diagnosis.md").read_text()]
    (out / "report.md").write_text("\n".join(lines))
    return summary

"""`r1 eval`: benchmarks with pass@1 over K samples, pass@k, cons@k; `r1 eval compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from r1.cli import options
from r1.errors import R1Error
from r1.types import R1_TEMPERATURE, R1_TOP_P

app = typer.Typer(add_completion=False, invoke_without_command=True, no_args_is_help=False,
                  help=f"Evaluate a model on a benchmark (R1 protocol: T={R1_TEMPERATURE}, top-p {R1_TOP_P}, "
                  "K samples).")


@app.callback()
@options.sampling_command("runs/eval-BENCHMARK-MODEL")
def evaluate(
    ctx: typer.Context,
    benchmark: Optional[str] = typer.Option(None, help="math500, aime24, aime25, amc23, gsm8k, humaneval, arithmetic, "
                                            "countdown"),
    data: Optional[str] = typer.Option(None, help="local JSONL (fields id, problem, answer) instead of the HF dataset"),
    from_run: Optional[str] = typer.Option(None, help="a training run: evaluate on its task's held-out set with its prompts"),
    tools: Optional[str] = typer.Option(None, help="tools the model may call, comma-separated (calculator, python, "
                                        "file.py:function): each sample is a multi-turn episode; 'none': no tools, "
                                        "even where the run trained with them"),
    *, out: Optional[str], resume: bool, api_key: Optional[str], progress: bool, sampling: dict,  # from the decorator
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from r1.eval.benchmarks import get_benchmark, load_problems
    from r1.eval.runner import EvalConfig, from_run_settings, run_eval

    if not sampling["model"]:
        raise R1Error("--model is required (a model spec, or the API's model name with --api-base)")
    if from_run:
        task, examples, name, fields = from_run_settings(from_run)
        fields["tools"] = _tools(tools, fields["tools"])
        cfg = options.build(EvalConfig, **(sampling | fields), data=data, benchmark=benchmark or name)
        suffix = ""
    else:
        if not benchmark:
            raise R1Error("--benchmark is required (or --from-run RUN_DIR)")
        bench = get_benchmark(benchmark)
        cfg = options.build(EvalConfig, **sampling, data=data, benchmark=benchmark, fallback=bench.fallback,
                            tools=_tools(tools, None))
        task, examples = load_problems(bench, data, seed=cfg.seed)  # settings checked first: no wasted download
        suffix = bench.suffix
    out = out or options.default_out("eval", benchmark or Path(from_run or "").name, cfg.api_model or cfg.model)
    result = run_eval(cfg, Path(out), task=task, examples=examples, suffix=suffix, progress=progress,
                      resume=resume, api_key=api_key)
    m = result["metrics"]
    k = cfg.samples
    typer.echo(f"{cfg.benchmark}: pass@1 {m['pass@1']:.3f} (95% CI {m['pass@1_ci95'][0]:.3f}-"
               f"{m['pass@1_ci95'][1]:.3f}), cons@{k} {m[f'cons@{k}']:.3f}, strict format {m['format_rate']:.3f}, "
               f"answered {m['answered_rate']:.3f} "
               f"over {m['problems']} problems x {k} samples")
    if "tool_use_rate" in m:
        typer.echo(f"tools: {m['tool_use_rate']:.3f} of episodes called one, {m['tool_calls']:.2f} calls and "
                   f"{m['episode_turns']:.2f} turns per episode, {m['tool_error_rate']:.3f} of calls failed")
    typer.echo(f"written to {out} (summary.json, samples.jsonl, report.md, config.yaml)")


def _tools(flag: Optional[str], run_tools):
    """The tools section from --tools: none, the run's own (flag not given), or the names given
    (with the run's other tool settings, where it had them)."""
    if flag is None:
        return run_tools
    if flag.strip().lower() == "none":
        return None
    names = [n.strip() for n in flag.split(",") if n.strip()]
    if not names:
        raise R1Error("--tools needs tool names (calculator, python, file.py:function) or 'none'")
    from r1.data.tools import get_tool

    for n in names:
        get_tool(n)  # an unknown tool is a one-line error before the model loads
    return (run_tools.model_dump() if run_tools is not None else {}) | {"names": names}


@app.command()
def compare(dirs: list[str] = typer.Argument(..., help="two or more evaluation directories")) -> None:
    """Print the metrics of several evaluations side by side."""
    from r1.report.eval import compare_table

    if len(dirs) < 2:
        raise R1Error("compare needs at least two evaluation directories")
    typer.echo(compare_table(dirs))

"""`r1 eval`: benchmarks with pass@1 over K samples, pass@k, cons@k; `r1 eval compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from r1.cli import options as O
from r1.errors import R1Error
from r1.types import R1_TEMPERATURE, R1_TOP_P

app = typer.Typer(add_completion=False, invoke_without_command=True, no_args_is_help=False,
                  help=f"Evaluate a model on a benchmark (R1 protocol: T={R1_TEMPERATURE}, top-p {R1_TOP_P}, "
                  "K samples).")


@app.callback()
def evaluate(
    ctx: typer.Context,
    model: Optional[str] = O.Model,
    benchmark: Optional[str] = typer.Option(None, help="math500, aime24, aime25, amc23, gsm8k, humaneval, arithmetic, "
                                            "countdown"),
    data: Optional[str] = typer.Option(None, help="local JSONL (fields id, problem, answer) instead of the HF dataset"),
    from_run: Optional[str] = typer.Option(None, help="a training run: evaluate on its task's held-out set with its prompts"),
    out: Optional[str] = O.out_option("runs/eval-BENCHMARK-MODEL"),
    resume: bool = O.Resume,
    samples: int = O.Samples,
    limit: Optional[int] = O.Limit,
    max_new_tokens: int = O.MaxNewTokens,
    temperature: float = O.Temperature,
    top_p: float = O.TopP,
    seed: int = O.Seed,
    batch_size: int = O.BatchSize,
    prompt_style: str = O.PromptStyle,
    force_think: Optional[bool] = O.ForceThink,
    api_base: Optional[str] = O.ApiBase,
    api_model: Optional[str] = O.ApiModel,
    api_key: Optional[str] = O.ApiKey,
    concurrency: int = O.Concurrency,
    rate_limit: Optional[float] = O.RateLimit,
    max_retries: int = O.MaxRetries,
    engine: str = O.Engine,
    gpu_memory_utilization: float = O.GpuMemoryUtilization,
    kv_cache_gb: Optional[float] = O.KvCacheGb,
    enforce_eager: bool = O.EnforceEager,
    progress: bool = O.Progress,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from r1.eval.benchmarks import get_benchmark, load_problems
    from r1.eval.runner import EvalConfig, from_run_settings, run_eval

    if not model:
        raise R1Error("--model is required (a model spec, or the API's model name with --api-base)")
    settings = O.sampling_settings(
        model=model, api_base=api_base, api_model=api_model, data=data, samples=samples, limit=limit,
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
        concurrency=concurrency, rate_limit=rate_limit, max_retries=max_retries, prompt_style=prompt_style,
        force_think=force_think, engine=engine, gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager)
    if from_run:
        task, examples, name, fields = from_run_settings(from_run)
        cfg = O.build(EvalConfig, **(settings | fields), benchmark=benchmark or name)
        suffix = ""
    else:
        if not benchmark:
            raise R1Error("--benchmark is required (or --from-run RUN_DIR)")
        bench = get_benchmark(benchmark)
        task, examples = load_problems(bench, data, seed=seed)
        cfg = O.build(EvalConfig, **settings, benchmark=benchmark, fallback=bench.fallback)
        suffix = bench.suffix
    out = out or O.default_out("eval", benchmark or Path(from_run or "").name, api_model or model)
    result = run_eval(cfg, Path(out), task=task, examples=examples, suffix=suffix, progress=progress,
                      resume=resume, api_key=api_key)
    m = result["metrics"]
    k = cfg.samples
    typer.echo(f"{cfg.benchmark}: pass@1 {m['pass@1']:.3f} (95% CI {m['pass@1_ci95'][0]:.3f}-"
               f"{m['pass@1_ci95'][1]:.3f}), cons@{k} {m[f'cons@{k}']:.3f}, strict format {m['format_rate']:.3f}, "
               f"answered {m['answered_rate']:.3f} "
               f"over {m['problems']} problems x {k} samples")
    typer.echo(f"written to {out} (summary.json, samples.jsonl, report.md, config.yaml)")


@app.command()
def compare(dirs: list[str] = typer.Argument(..., help="two or more evaluation directories")) -> None:
    """Print the metrics of several evaluations side by side."""
    from r1.report.eval import compare_table

    if len(dirs) < 2:
        raise R1Error("compare needs at least two evaluation directories")
    typer.echo(compare_table(dirs))

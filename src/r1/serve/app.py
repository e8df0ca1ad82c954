"""The FastAPI routes of `r1 serve`: OpenAI's chat and completions API with R1's reasoning split.

Per request: the edge (edge.py) authenticates and validates; the prompt is rendered
(system prompt folded into the user turn, ``<think>\\n`` forced) and checked against the
context; the engine gets one request per choice (429 when its queue is full); token ids
come back as text deltas (text.py), cut at stop strings and split into reasoning and
content. A client that disconnects cancels its request; a request past its timeout ends;
a request whose generation fails is answered with an error and harms no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from r1.serve import protocol
from r1.serve import responses
from r1.serve.edge import (ERROR_RESPONSES, APIError, add_openapi, authenticate, check_content_type,
                           install_error_handlers, parse_json, read_body, validate)
from r1.data.answers import ANSWER_OPEN
from r1.data.prompts import PromptFormat
from r1.data.templates import BASE_OPEN
from r1.data.tools import CALL_CLOSE, RESPONSE_OPEN
from r1.serve.interface import EngineRequest, EngineUnavailable, QueueFull, Step
from r1.serve.text import AnswerText, Choice, ToolCallText, render_chat
from r1.types import R1_TEMPERATURE, R1_TOP_P

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    model_name: str
    api_key: Optional[str] = None
    max_tokens_cap: int = 4096  # the most a request may ask for
    default_max_tokens: int = 1024  # when a chat request does not say
    max_prompt_tokens: Optional[int] = None  # default: the model's context minus one
    request_timeout: float = 600.0  # seconds from arrival (queueing included) to the last token
    max_body_bytes: int = 4 << 20
    prompt: Optional[PromptFormat] = None


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Routes:
    """What the routes share: the engine, the settings, and the steps of every request."""

    def __init__(self, engine: Any, settings: ServeSettings):
        self.engine, self.settings = engine, settings
        self.tokenizer = engine.tokenizer
        self.max_prompt = settings.max_prompt_tokens or max(engine.max_model_len - 1, 1)
        self.style = settings.prompt or PromptFormat.as_sent(self.tokenizer)
        self.vocab_size = int(getattr(engine, "vocab_size", None) or len(self.tokenizer))
        self.trained_by_r1 = BASE_OPEN in str(getattr(self.tokenizer, "chat_template", None) or "")

    async def parse(self, request: Request, model: type) -> Any:
        authenticate(request, self.settings.api_key)
        check_content_type(request)
        req = validate(model, parse_json(await read_body(request, self.settings.max_body_bytes)))
        if req.model is not None and req.model != self.settings.model_name:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves "
                                f"{self.settings.model_name!r}", param="model", code="model_not_found")
        return req

    def budget(self, prompt_ids: list[int], asked: Optional[int], param: str) -> int:
        """The completion's token budget, or a 400 as vLLM gives: a prompt over the context,
        or max_tokens over the cap or over the room the prompt leaves."""
        n, context, cap = len(prompt_ids), self.engine.max_model_len, self.settings.max_tokens_cap
        if n > self.max_prompt or n >= context:
            raise APIError(400, f"the prompt is {n} tokens; this server takes at most {min(self.max_prompt, context - 1)}",
                           param=param, code="context_length_exceeded")
        if asked is None:
            return min(self.settings.default_max_tokens, cap, context - n)
        if asked > cap:
            raise APIError(400, f"max_tokens is {asked}; this server allows at most {cap}",
                           param="max_tokens", code="invalid_value")
        if n + asked > context:
            raise APIError(400, f"this model's maximum context length is {context} tokens; you asked for "
                                f"{n + asked} ({n} in the prompt, {asked} in the completion): reduce the prompt "
                                f"or max_tokens", param="max_tokens", code="context_length_exceeded")
        return asked

    def submit(self, prompt_ids: list[int], req: Any, max_tokens: int, reasoning: Optional[bool],
               keep_stops: tuple[str, ...] = (), *, stops: tuple[str, ...] = (), tools: Optional[list[str]] = None,
               answer_tags: bool = False) -> list[Choice]:
        """One engine request per choice. `stops` add to the request's own; `tools`: the
        functions whose calls are taken out of the content; `answer_tags`: drop <answer> tags."""
        temperature, top_p = req.sampling()
        deadline = time.monotonic() + self.settings.request_timeout
        handles = []
        try:
            for i in range(req.n):
                handles.append(self.engine.submit(EngineRequest(
                    prompt_ids=prompt_ids, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                    seed=None if req.seed is None else req.seed + i, deadline=deadline,
                    ignore_eos=req.ignore_eos, logprobs=req.logprob_count())))
        except (QueueFull, EngineUnavailable) as e:
            for h in handles:
                h.cancel()
            if isinstance(e, QueueFull):
                raise APIError(429, f"the server is busy: {e}; retry shortly", code="queue_full",
                               headers={"Retry-After": "1"}) from None
            raise APIError(503, f"the engine is unavailable: {e}", code="engine_unavailable") from None
        parallel = getattr(req, "parallel_tool_calls", None) is not False
        return [Choice(i, h, self.tokenizer, req.stops() + stops, reasoning, keep_stops,
                       ToolCallText(tools, parallel) if tools else None, AnswerText() if answer_tags else None)
                for i, h in enumerate(handles)]

    @staticmethod
    async def steps(choices: list[Choice]) -> AsyncIterator[tuple[Choice, Step]]:
        """Every choice's steps as they come, merged; a choice a stop string ended is skipped
        (the engine drops it at its next step)."""
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(choice: Choice) -> None:
            async for step in choice.handle:
                await merged.put((choice, step))

        tasks = [asyncio.create_task(pump(c)) for c in choices]
        try:
            left = len(choices)
            while left:
                choice, step = await merged.get()
                if step.finish is not None:
                    left -= 1
                if choice.finish is None:
                    yield choice, step
        finally:
            for t in tasks:
                t.cancel()

    @staticmethod
    async def watch_disconnect(request: Request, choices: list[Choice]) -> None:
        while True:
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                for c in choices:
                    c.handle.cancel()
                return

    async def collect(self, request: Request, choices: list[Choice]) -> list[tuple[str, str]]:
        """Each choice's (reasoning, content), whole."""
        texts = {c.index: ["", ""] for c in choices}
        watcher = asyncio.create_task(self.watch_disconnect(request, choices))
        try:
            async for choice, step in self.steps(choices):
                r, c = choice.feed(step)
                texts[choice.index][0] += r
                texts[choice.index][1] += c
        finally:
            watcher.cancel()
            for c in choices:  # whatever happened, the engine stops working for this request
                c.handle.cancel()
        errors = [e for c in choices if (e := self.finish_error(c)) is not None]
        if errors:  # a failed generation (500) outranks shutdown (503), which outranks a timeout (504)
            raise min(errors, key=lambda e: e.status)
        return [(r.rstrip(), c.rstrip()) for r, c in (texts[ch.index] for ch in choices)]

    def finish_error(self, choice: Choice) -> Optional[APIError]:
        """The error a choice ended with, if any (raised, or sent as an event in a stream)."""
        if choice.finish == "error":
            return APIError(500, f"the generation of this request failed: {choice.error}", code="engine_error")
        if choice.finish in ("shutdown", "cancelled"):
            return APIError(503, "the server is shutting down; retry elsewhere or later", code="shutting_down")
        if choice.finish == "timeout":
            return APIError(504, f"the request took longer than {self.settings.request_timeout:g} s", code="timeout")
        return None

    def usage_of(self, prompt_tokens: int, choices: list[Choice], chat: bool) -> dict:
        reasoning = sum(c.reasoning_tokens or 0 for c in choices) if chat and self.style.force_think else None
        return responses.usage(prompt_tokens, sum(c.tokens for c in choices), reasoning)

    @staticmethod
    def event_stream(events: AsyncIterator[str], choices: list[Choice]) -> StreamingResponse:
        async def guarded() -> AsyncIterator[str]:
            try:
                async for event in events:
                    yield event
            except Exception as e:  # noqa: BLE001 — the status is sent already: end with an error event
                yield sse(APIError(500, f"internal error ({type(e).__name__}) while streaming",
                                   code="internal_error").body())
                yield "data: [DONE]\n\n"
            finally:  # the client went away (or we are done): free the engine's rows
                for c in choices:
                    c.handle.cancel()

        return StreamingResponse(guarded(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- the routes -----------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        req: protocol.ChatCompletionRequest = await self.parse(request, protocol.ChatCompletionRequest)
        names = req.tool_names()
        declared = [t.model_dump(exclude_none=True) for t in req.tools or ()] if names else None
        text, prefill = render_chat(req.messages, self.tokenizer, self.style, declared)
        prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        max_tokens = self.budget(prompt_ids, req.token_limit(), "messages")
        # with tools: the model's own continuation of a call (a response it writes itself) ends
        # the answer; the end of the first call does without parallel calls, and for a model r1
        # trained, whose episodes ended every turn there
        one_call = names and (req.parallel_tool_calls is False or self.trained_by_r1)
        choices = self.submit(prompt_ids, req, max_tokens, bool(prefill),
                              self.style.stop + ((CALL_CLOSE,) if one_call else ()),
                              stops=(RESPONSE_OPEN,) if names else (), tools=names,
                              answer_tags=ANSWER_OPEN in text and not req.raw_content)
        cid, model = responses.new_id("chatcmpl"), self.settings.model_name
        if not req.stream:
            parts = await self.collect(request, choices)
            out = [{"index": c.index, "message": responses.chat_message(r, t, c.calls), "finish_reason": c.openai_finish,
                    "logprobs": c.chat_logprobs()} for c, (r, t) in zip(choices, parts)]
            return JSONResponse(responses.chat_response(cid, model, out, self.usage_of(len(prompt_ids), choices, True)))
        created, include_usage = responses.now(), req.include_usage()

        def chunk(choice: Choice, d: dict, finish: Optional[str] = None, usage: Optional[dict] = None) -> str:
            return sse(responses.chat_chunk(cid, model, created, [{
                "index": choice.index, "delta": d, "finish_reason": finish, "logprobs": choice.chat_logprobs()}], usage))

        async def events() -> AsyncIterator[str]:
            for c in choices:
                yield chunk(c, responses.delta(role=True, content=""))
            finished = 0
            async for choice, step in self.steps(choices):
                r, t = choice.feed(step)
                if r:
                    yield chunk(choice, responses.delta(reasoning=r))
                if t:
                    yield chunk(choice, responses.delta(content=t))
                if calls := choice.take_calls():
                    yield chunk(choice, responses.delta(tool_calls=calls))
                if choice.finish is None:
                    continue
                if (error := self.finish_error(choice)) is not None:
                    yield sse(error.body())
                    break
                finished += 1
                last = finished == len(choices) and not include_usage  # DeepSeek: usage on the last chunk
                usage = self.usage_of(len(prompt_ids), choices, True) if last else None
                yield chunk(choice, responses.delta(content=""), choice.openai_finish, usage)
            if include_usage:  # OpenAI: one more chunk, no choices, the usage
                yield sse(responses.chat_chunk(cid, model, created, [], self.usage_of(len(prompt_ids), choices, True)))
            yield "data: [DONE]\n\n"

        return self.event_stream(events(), choices)

    def completion_prompt(self, req: protocol.CompletionRequest) -> tuple[list[int], str]:
        if isinstance(req.prompt, str):
            ids = self.tokenizer(req.prompt, add_special_tokens=False)["input_ids"]
            if not ids:
                raise APIError(400, "prompt: the prompt is empty", param="prompt", code="invalid_value")
            return ids, req.prompt
        bad = next((i for i in req.prompt if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise APIError(400, f"prompt: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})",
                           param="prompt", code="invalid_value")
        return list(req.prompt), self.tokenizer.decode(req.prompt)

    async def completions(self, request: Request) -> Response:
        req: protocol.CompletionRequest = await self.parse(request, protocol.CompletionRequest)
        prompt_ids, prompt = self.completion_prompt(req)
        choices = self.submit(prompt_ids, req, self.budget(prompt_ids, req.token_limit(), "prompt"), None)
        cid, model = responses.new_id("cmpl"), self.settings.model_name
        head = prompt if req.echo else ""
        if not req.stream:
            parts = await self.collect(request, choices)
            out = [{"index": c.index, "text": head + t, "finish_reason": c.openai_finish,
                    "logprobs": c.completion_logprobs(0)} for c, (_, t) in zip(choices, parts)]
            return JSONResponse(responses.completion_response(cid, model, out,
                                                              self.usage_of(len(prompt_ids), choices, False)))
        created, include_usage = responses.now(), req.include_usage()
        sent = {c.index: 0 for c in choices}

        def chunk(choice: Choice, text: str, finish: Optional[str] = None, usage: Optional[dict] = None) -> str:
            logprobs = choice.completion_logprobs(sent[choice.index])
            sent[choice.index] += len(text)
            return sse(responses.completion_chunk(cid, model, created, [{"index": choice.index, "text": text,
                                                                 "logprobs": logprobs, "finish_reason": finish}], usage))

        async def events() -> AsyncIterator[str]:
            if head:
                for c in choices:
                    yield sse(responses.completion_chunk(cid, model, created, [
                        {"index": c.index, "text": head, "finish_reason": None, "logprobs": None}]))
            finished = 0
            async for choice, step in self.steps(choices):
                _, t = choice.feed(step)
                if choice.finish is None:
                    if t:
                        yield chunk(choice, t)
                    continue
                if (error := self.finish_error(choice)) is not None:
                    yield sse(error.body())
                    break
                finished += 1
                last = finished == len(choices) and not include_usage
                yield chunk(choice, t, choice.openai_finish,
                            self.usage_of(len(prompt_ids), choices, False) if last else None)
            if include_usage:
                yield sse(responses.completion_chunk(cid, model, created, [],
                                                     self.usage_of(len(prompt_ids), choices, False)))
            yield "data: [DONE]\n\n"

        return self.event_stream(events(), choices)

    async def health(self) -> JSONResponse:
        stats = self.engine.stats()
        return JSONResponse({"status": "ok" if stats["healthy"] else "unavailable",
                             "model": self.settings.model_name, **stats},
                            status_code=200 if stats["healthy"] else 503)

    async def models(self, request: Request) -> dict:
        authenticate(request, self.settings.api_key)
        return {"object": "list", "data": [{
            "id": self.settings.model_name, "object": "model", "created": responses.now(), "owned_by": "r1",
            "max_model_len": self.engine.max_model_len,
            "sampling_defaults": {"temperature": R1_TEMPERATURE, "top_p": R1_TOP_P}}]}


def _streaming_200(model: type, chunk: type) -> dict:
    return {200: {"model": model, "description": "the answer; with stream: true, server-sent events of "
                  f"{chunk.__name__} objects ending with `data: [DONE]`",
                  "content": {"text/event-stream": {"schema": {"$ref": f"#/components/schemas/{chunk.__name__}"}}}}}


def create_app(engine: Any, settings: ServeSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)

    app = FastAPI(title="r1 serve", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    install_error_handlers(app)
    routes = Routes(engine, settings)
    errors = {k: v for k, v in ERROR_RESPONSES.items()}
    chat_200 = _streaming_200(responses.ChatCompletion, responses.ChatCompletionChunk)
    app.post("/v1/chat/completions", responses={**errors, **chat_200},
             summary="Chat completion (reasoning_content and content)")(routes.chat)
    app.post("/v1/completions", responses={**errors, **_streaming_200(responses.Completion, responses.Completion)},
             summary="Text completion (string or token-id prompt)")(routes.completions)
    app.get("/v1/models", response_model=responses.ModelList, responses={401: errors[401]})(routes.models)
    app.get("/health", response_model=responses.Health, responses={503: {"model": responses.Health}})(routes.health)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_openapi(app, {"/v1/chat/completions": protocol.ChatCompletionRequest,
                      "/v1/completions": protocol.CompletionRequest},
                bearer=bool(settings.api_key), extra=(responses.ChatCompletionChunk,))
    return app

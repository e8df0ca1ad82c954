"""The FastAPI routes of `r1 serve`: OpenAI's chat and completions API with R1's reasoning split.

Per request: authenticate, validate (OpenAI-style 4xx bodies, never a 500 for bad input),
render the prompt (system prompt folded into the user turn, ``<think>\\n`` forced),
submit to the engine (429 when its queue is full), then turn token ids into text deltas,
cut them at stop strings, and split reasoning from content. A client that disconnects
cancels its request; a request past its timeout ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from r1.serve import protocol as P
from r1.serve.engine import EngineRequest, EngineUnavailable, QueueFull, RequestHandle, Step
from r1.serve.reasoning import ReasoningStream

STATIC = Path(__file__).parent / "static"


@dataclass
class PromptStyle:
    """How a chat becomes a prompt. Plain serving uses the tokenizer's chat template; a
    model served from a training run uses the run's own prompt (template, style)."""

    style: str = "chat"  # "chat" or "r1_zero"
    template: Optional[str] = None  # the run's user-turn template ({question}, {answer_hint})
    answer_hint: str = "the final answer"
    force_think: bool = True
    # a run's stop strings (`rollout.stop`, e.g. "</answer>"): a model trained with them was
    # always cut there and never learnt to stop by itself; they end every answer, kept in it
    stop: tuple[str, ...] = ()


@dataclass
class ServeSettings:
    model_name: str
    api_key: Optional[str] = None
    max_tokens_cap: int = 4096  # the most a request may ask for
    default_max_tokens: int = 1024  # when a chat request does not say
    max_prompt_tokens: Optional[int] = None  # default: the model's context minus one
    request_timeout: float = 600.0  # seconds from arrival (queueing included) to the last token
    max_body_bytes: int = 4 << 20
    prompt: Optional[PromptStyle] = None


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 type_: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers
        self.type = type_ or {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                              503: "server_error", 504: "timeout_error"}.get(status, "invalid_request_error")

    def body(self) -> dict:
        return P.error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def render_chat(messages: list[P.ChatMessage], tokenizer: Any, style: PromptStyle) -> tuple[str, str]:
    """(prompt text, forced prefill). System and developer messages are folded into the
    first user turn (R1's usage rule); earlier answers keep their content, not their reasoning."""
    from r1.data.prompts import R1_ZERO_TEMPLATE, user_content

    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer") and m.text())
    turns = [{"role": m.role, "content": m.text()} for m in messages if m.role in ("user", "assistant")]
    last_user = max(i for i, t in enumerate(turns) if t["role"] == "user")
    if style.template is not None or style.style == "r1_zero":
        question = turns[last_user]["content"]
        turns[last_user]["content"] = (question if style.style == "r1_zero"
                                       else user_content(question, style.template, style.answer_hint))
    if system:
        first = next(i for i, t in enumerate(turns) if t["role"] == "user")
        turns[first]["content"] = f"{system}\n\n{turns[first]['content']}"
    prefill = "<think>\n" if style.force_think else ""
    if style.style == "r1_zero":  # the plain-text template of the paper: one question, no history
        text = R1_ZERO_TEMPLATE.format(question=turns[last_user]["content"].strip())
        return text + (" " + prefill if prefill else ""), prefill
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{t['role'].capitalize()}: {t['content']}\n" for t in turns) + "Assistant: "
    return text + prefill, prefill


class Detokenizer:
    """Token ids in, text deltas out, without re-decoding the whole sequence each time and
    without emitting half of a multi-byte character (the "prefix offset" method)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def feed(self, token_ids: list[int]) -> str:
        self.ids.extend(token_ids)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = decode(self.ids[self.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """At the end: whatever is still held (an incomplete character shows as U+FFFD)."""
        before = self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True)
        self.prefix = self.read = len(self.ids)
        return after[len(before):]


class StopText:
    """Cut the text at the first stop string; hold back a tail that may be one's beginning.
    A stop in `keep` stays in the text (the run's own stops); others are cut off (OpenAI)."""

    def __init__(self, stops: tuple[str, ...], keep: tuple[str, ...] = ()):
        self.stops = tuple(dict.fromkeys(stops + keep))
        self.keep = set(keep)
        self.held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if not self.stops:
            return delta
        text = self.held + delta
        found = [(i, s) for s in self.stops if (i := text.find(s)) >= 0]
        if found:
            cut, stop = min(found)
            self.stopped, self.held = True, ""
            return text[: cut + len(stop)] if stop in self.keep else text[:cut]
        keep = max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:]
        return text[: len(text) - keep]

    def finish(self) -> str:
        held, self.held = self.held, ""
        return held


class Choice:
    """One sampled answer being turned from token ids into text."""

    def __init__(self, index: int, handle: RequestHandle, tokenizer: Any, stops: tuple[str, ...],
                 reasoning: Optional[bool], keep_stops: tuple[str, ...] = ()):
        self.index, self.handle = index, handle
        self.detok = Detokenizer(tokenizer)
        self.stop = StopText(stops, keep_stops)
        self.split = ReasoningStream(reasoning=reasoning) if reasoning is not None else None
        self.tokens = 0
        self.reasoning_tokens: Optional[int] = 0 if reasoning else None
        self.finish: Optional[str] = None

    def feed(self, step: Step) -> tuple[str, str]:
        """(reasoning delta, content delta); for /v1/completions everything is content."""
        self.tokens += len(step.token_ids)
        text = self.detok.feed(step.token_ids)
        if step.finish is not None:
            text += self.detok.flush()
        text = self.stop.feed(text)
        if self.stop.stopped:
            self.handle.cancel()
            self.finish = "stop"
        elif step.finish is not None:
            text += self.stop.finish()
            self.finish = step.finish
        if self.split is None:
            return "", text
        if self.reasoning_tokens is not None and self.split.in_reasoning:
            self.reasoning_tokens += len(step.token_ids)  # the think block, its closing tag included
        r, c = self.split.feed(text)
        if self.finish is not None:
            r2, c2 = self.split.finish()
            r, c = r + r2, c + c2
        return r, c

    @property
    def openai_finish(self) -> str:
        return {"stop": "stop", "length": "length", "timeout": "length"}.get(self.finish or "", "stop")


def create_app(engine: Any, settings: ServeSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)

    app = FastAPI(title="r1 serve", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    tokenizer = engine.tokenizer
    max_prompt = settings.max_prompt_tokens or max(engine.max_model_len - 1, 1)
    style = settings.prompt or PromptStyle()

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return APIError(404, f"no route {request.method} {request.url.path}", code="not_found").response()

    @app.exception_handler(405)
    async def _bad_method(request: Request, _: Exception) -> JSONResponse:
        return APIError(405, f"{request.method} is not allowed on {request.url.path}",
                        code="method_not_allowed").response()

    def authenticate(request: Request) -> None:
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key")

    async def parse(request: Request, model: type) -> Any:
        authenticate(request)
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > settings.max_body_bytes:
            raise APIError(413, f"request body of {size} bytes is over the limit of {settings.max_body_bytes}",
                           code="body_too_large")
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            raise APIError(413, f"request body is over the limit of {settings.max_body_bytes} bytes",
                           code="body_too_large")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            req = model.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err.get("loc", ())) or None
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            raise APIError(400, f"{param}: {msg}" if param else msg, param=param, code="invalid_value") from None
        if req.model is not None and req.model != settings.model_name:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves "
                                f"{settings.model_name!r}", param="model", code="model_not_found")
        return req

    def submit(prompt_ids: list[int], req: Any, max_tokens: int) -> list[RequestHandle]:
        if len(prompt_ids) > max_prompt:
            raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; this server takes at most {max_prompt}",
                           param="messages" if hasattr(req, "messages") else "prompt",
                           code="context_length_exceeded")
        if max_tokens > settings.max_tokens_cap:
            raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens_cap}",
                           param="max_tokens", code="invalid_value")
        room = engine.max_model_len - len(prompt_ids)
        if room < 1:
            raise APIError(400, f"the prompt ({len(prompt_ids)} tokens) fills the model's context of "
                                f"{engine.max_model_len}", code="context_length_exceeded")
        if req.presence_penalty or req.frequency_penalty:
            raise APIError(400, "presence_penalty and frequency_penalty are not supported (use 0)",
                           param="presence_penalty" if req.presence_penalty else "frequency_penalty",
                           code="unsupported_parameter")
        temperature, top_p = req.sampling()
        deadline = time.monotonic() + settings.request_timeout
        handles = []
        try:
            for i in range(req.n):
                seed = None if req.seed is None else req.seed + i
                handles.append(engine.submit(EngineRequest(
                    prompt_ids=prompt_ids, max_tokens=min(max_tokens, room), temperature=temperature,
                    top_p=top_p, seed=seed, deadline=deadline, ignore_eos=req.ignore_eos)))
        except QueueFull as e:
            for h in handles:
                h.cancel()
            raise APIError(429, f"the server is busy: {e}; retry shortly", code="queue_full",
                           headers={"Retry-After": "1"}) from None
        except EngineUnavailable as e:
            for h in handles:
                h.cancel()
            raise APIError(503, f"the engine is unavailable: {e}", code="engine_unavailable") from None
        return handles

    async def steps(choices: list[Choice]) -> AsyncIterator[tuple[Choice, Step]]:
        """Every choice's steps as they come, merged."""
        if len(choices) == 1:
            async for step in choices[0].handle:
                yield choices[0], step
            return
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
                yield choice, step
        finally:
            for t in tasks:
                t.cancel()

    async def watch_disconnect(request: Request, choices: list[Choice]) -> None:
        while True:
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                for c in choices:
                    c.handle.cancel()
                return

    async def collect(request: Request, choices: list[Choice]) -> list[tuple[str, str]]:
        texts = {c.index: ["", ""] for c in choices}
        watcher = asyncio.create_task(watch_disconnect(request, choices))
        try:
            async for choice, step in steps(choices):
                if choice.finish is not None:
                    continue  # a stop string already ended it; the engine drops it next step
                r, c = choice.feed(step)
                texts[choice.index][0] += r
                texts[choice.index][1] += c
        finally:
            watcher.cancel()
            for c in choices:  # whatever happened, the engine stops working for this request
                c.handle.cancel()
        errors = [e for c in choices if (e := finish_error(c)) is not None]
        if errors:  # an engine failure (503) outranks a timeout (504)
            raise min(errors, key=lambda e: e.status)
        return [(r.rstrip(), c.rstrip()) for r, c in (texts[ch.index] for ch in choices)]

    def finish_error(choice: Choice) -> Optional[APIError]:
        """The error a choice ended with, if any (raised, or sent as an event in a stream)."""
        if choice.finish in ("error", "cancelled"):
            return APIError(503, "the engine stopped before the answer was complete", code="engine_error")
        if choice.finish == "timeout":
            return APIError(504, f"the request took longer than {settings.request_timeout:g} s", code="timeout")
        return None

    def usage_of(prompt_tokens: int, choices: list[Choice], chat: bool) -> dict:
        reasoning = sum(c.reasoning_tokens or 0 for c in choices) if chat and style.force_think else None
        return P.usage(prompt_tokens, sum(c.tokens for c in choices), reasoning)

    def event_stream(events: AsyncIterator[str], choices: list[Choice]) -> StreamingResponse:
        async def guarded() -> AsyncIterator[str]:
            try:
                async for event in events:
                    yield event
            finally:  # the client went away (or we are done): free the engine's rows
                for c in choices:
                    c.handle.cancel()

        return StreamingResponse(guarded(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def sse(obj: Any) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    @app.get("/health")
    async def health() -> JSONResponse:
        stats = engine.stats()
        return JSONResponse({"status": "ok" if stats["healthy"] else "unavailable", "model": settings.model_name,
                             **stats}, status_code=200 if stats["healthy"] else 503)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authenticate(request)
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": P.now(),
                                            "owned_by": "r1", "max_model_len": engine.max_model_len}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req: P.ChatCompletionRequest = await parse(request, P.ChatCompletionRequest)
        text, _prefill = render_chat(req.messages, tokenizer, style)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        max_tokens = req.token_limit() or min(settings.default_max_tokens, settings.max_tokens_cap)
        handles = submit(prompt_ids, req, max_tokens)
        reasoning = style.force_think
        choices = [Choice(i, h, tokenizer, req.stops(), reasoning, style.stop) for i, h in enumerate(handles)]
        cid = P.new_id("chatcmpl")
        if not req.stream:
            parts = await collect(request, choices)
            out = [{"index": c.index, "message": P.chat_message(r, t), "finish_reason": c.openai_finish,
                    "logprobs": None} for c, (r, t) in zip(choices, parts)]
            return JSONResponse(P.chat_response(cid, settings.model_name, out,
                                                usage_of(len(prompt_ids), choices, True)))

        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        created = P.now()

        async def events() -> AsyncIterator[str]:
            for c in choices:
                yield sse(P.chat_chunk(cid, settings.model_name, created, [
                    {"index": c.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
            async for choice, step in steps(choices):
                if choice.finish is not None:
                    continue
                r, t = choice.feed(step)
                for key, value in (("reasoning_content", r), ("content", t)):
                    if value:
                        yield sse(P.chat_chunk(cid, settings.model_name, created, [
                            {"index": choice.index, "delta": {key: value}, "finish_reason": None}]))
                if choice.finish is not None:
                    error = finish_error(choice)
                    if error is not None:
                        yield sse(error.body())
                        break
                    yield sse(P.chat_chunk(cid, settings.model_name, created, [
                        {"index": choice.index, "delta": {}, "finish_reason": choice.openai_finish}]))
            if include_usage:
                yield sse(P.chat_chunk(cid, settings.model_name, created, [],
                                       usage_of(len(prompt_ids), choices, True)))
            yield "data: [DONE]\n\n"

        return event_stream(events(), choices)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req: P.CompletionRequest = await parse(request, P.CompletionRequest)
        prompt = req.text()
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not prompt_ids:
            raise APIError(400, "prompt: the prompt is empty", param="prompt", code="invalid_value")
        handles = submit(prompt_ids, req, req.token_limit())
        choices = [Choice(i, h, tokenizer, req.stops(), None) for i, h in enumerate(handles)]
        cid = P.new_id("cmpl")
        head = prompt if req.echo else ""
        if not req.stream:
            parts = await collect(request, choices)
            out = [{"index": c.index, "text": head + t, "finish_reason": c.openai_finish, "logprobs": None}
                   for c, (_, t) in zip(choices, parts)]
            return JSONResponse(P.completion_response(cid, settings.model_name, out,
                                                      usage_of(len(prompt_ids), choices, False)))
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        created = P.now()

        async def events() -> AsyncIterator[str]:
            if head:
                for c in choices:
                    yield sse(P.completion_chunk(cid, settings.model_name, created, [
                        {"index": c.index, "text": head, "finish_reason": None, "logprobs": None}]))
            async for choice, step in steps(choices):
                if choice.finish is not None:
                    continue
                _, t = choice.feed(step)
                done = choice.finish is not None
                if done and (error := finish_error(choice)) is not None:
                    yield sse(error.body())
                    break
                if t or done:
                    yield sse(P.completion_chunk(cid, settings.model_name, created, [
                        {"index": choice.index, "text": t, "logprobs": None,
                         "finish_reason": choice.openai_finish if done else None}]))
            if include_usage:
                yield sse(P.completion_chunk(cid, settings.model_name, created, [],
                                             usage_of(len(prompt_ids), choices, False)))
            yield "data: [DONE]\n\n"

        return event_stream(events(), choices)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""The OpenAI wire format that `r1 serve` writes: the response models (what the OpenAPI
document describes) and the builders of response bodies (plain dicts, built fast)."""

from __future__ import annotations

import time
import uuid
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: Optional[dict[str, int]] = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: Optional[list[TokenLogprobOut]] = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str = Field(description="a JSON object, as a string")


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCallOut


class StreamToolCall(ToolCallOut):
    index: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str] = None
    reasoning_content: Optional[str] = Field(None, description="the <think> part (null without reasoning)")
    tool_calls: Optional[list[ToolCallOut]] = Field(None, description="the functions the model called")


class _Choice(BaseModel):
    index: int
    finish_reason: Optional[str] = None


class _Envelope(BaseModel):
    id: str
    created: int
    model: str
    usage: Optional[Usage] = None


class _ChatChoice(_Choice):
    logprobs: Optional[ChatLogprobs] = None


class ChatChoice(_ChatChoice):
    message: AssistantMessage


class ChatCompletion(_Envelope):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Optional[str] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[StreamToolCall]] = None


class ChunkChoice(_ChatChoice):
    delta: ChunkDelta


class ChatCompletionChunk(_Envelope):
    """One server-sent event of a stream (``data: {...}``); the stream ends with ``data: [DONE]``."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChunkChoice]


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: Optional[list[dict[str, float]]] = None
    text_offset: list[int]


class CompletionChoice(_Choice):
    text: str
    logprobs: Optional[CompletionLogprobs] = None


class Completion(_Envelope):
    object: Literal["text_completion"]
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int
    sampling_defaults: dict[str, float] = Field(description="temperature and top_p a request that gives none "
                                                "samples with (R1's recommendation); the chat page starts from them")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "unavailable"]
    model: str
    healthy: bool


# -- body builders ---------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: Optional[int] = None) -> dict:
    out = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens}
    if reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def error_body(message: str, type_: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def chat_message(reasoning: str, content: str, calls: Optional[list[dict]] = None) -> dict:
    """An answer's message; with tool calls, `content` is null where nothing else was written."""
    msg = {"role": "assistant", "content": content or (None if calls else content), "reasoning_content": reasoning or None}
    if calls:
        msg["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    return msg


def delta(*, reasoning: Optional[str] = None, content: Optional[str] = None, role: bool = False,
          tool_calls: Optional[list[dict]] = None) -> dict:
    """A stream delta as DeepSeek's API sends it: `content` and `reasoning_content` are both
    always there (null when unused), so a loop reading either attribute never fails; tool calls
    come whole, each with its `index`, as OpenAI's first chunk of a call carries them."""
    d = {"role": "assistant"} if role else {}
    d.update(content=content, reasoning_content=reasoning)
    if tool_calls:
        d["tool_calls"] = tool_calls
    return d


def chat_response(cid: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": cid, "object": "chat.completion", "created": now(), "model": model,
            "choices": choices, "usage": usage_}


def chat_chunk(cid: str, model: str, created: int, choices: list[dict], usage_: Optional[dict] = None) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, "usage": usage_}


def completion_response(cid: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": cid, "object": "text_completion", "created": now(), "model": model,
            "choices": choices, "usage": usage_}


def completion_chunk(cid: str, model: str, created: int, choices: list[dict],
                     usage_: Optional[dict] = None) -> dict:
    return {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": usage_}

"""The OpenAI wire format that `r1 serve` speaks (requests validated here, responses built here).

Bounds that depend on the server's settings (max tokens, prompt length) are checked in
app.py; everything a request can get wrong by itself is checked by these models, and a
failure becomes an OpenAI-style 400 body naming the parameter.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

# R1's recommended usage (the model card): temperature 0.6, top-p 0.95.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.95


class _Request(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do (clients send `user`, ...).
    model_config = ConfigDict(extra="ignore")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None
    reasoning_content: Optional[str] = None  # accepted in history and dropped, as R1's usage says

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    # accepted for compatibility; r1's sampler has no penalties, so only 0 is honoured
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    model: Optional[str] = None
    ignore_eos: bool = False  # vLLM's extra parameter: generate max_tokens whatever comes (benchmarks)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> Any:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(self) -> tuple[float, float]:
        t = DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        p = DEFAULT_TOP_P if self.top_p is None else self.top_p
        return t, p


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in v):
            raise ValueError("messages must contain at least one user message")
        return v

    def token_limit(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]]
    max_tokens: int = Field(16, ge=1)  # OpenAI's default for /v1/completions
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("give one prompt (a string, or a list of one string)")
        return v

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int:
        return self.max_tokens


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


def chat_message(reasoning: str, content: str) -> dict:
    return {"role": "assistant", "content": content, "reasoning_content": reasoning or None}


def chat_response(cid: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": cid, "object": "chat.completion", "created": now(), "model": model,
            "choices": choices, "usage": usage_}


def chat_chunk(cid: str, model: str, created: int, choices: list[dict], usage_: Optional[dict] = None) -> dict:
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": choices}
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


def completion_response(cid: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": cid, "object": "text_completion", "created": now(), "model": model,
            "choices": choices, "usage": usage_}


def completion_chunk(cid: str, model: str, created: int, choices: list[dict],
                     usage_: Optional[dict] = None) -> dict:
    chunk = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices}
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk

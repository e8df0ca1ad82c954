"""The OpenAI wire format that `r1 serve` reads: the request models, validated here (the
responses it writes are in `responses.py`).

Bounds that depend on the server (max tokens, the context, the vocabulary) are checked in
app.py; everything a request can get wrong by itself is checked by these models, and a
failure becomes an OpenAI-style 400 body naming the parameter. OpenAI parameters r1 cannot
honour are refused with a 400 (code ``unsupported_parameter``), never silently ignored; the
few that change nothing about the answer (``user``, ``metadata``, ...) are accepted.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from r1.types import R1_TEMPERATURE, R1_TOP_P

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TOP_LOGPROBS = 20


def unsupported(message: str) -> PydanticCustomError:
    """A parameter OpenAI defines that r1 cannot honour (the app answers 400 unsupported_parameter)."""
    return PydanticCustomError("unsupported_parameter", message)


class _Request(BaseModel):
    # Fields OpenAI does not define are ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore")


class ToolCallFunction(_Request):
    name: str = ""
    arguments: str = ""


class ToolCall(_Request):
    id: Optional[str] = None
    type: str = "function"
    function: ToolCallFunction = Field(default_factory=ToolCallFunction)


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[dict[str, Any]], None] = Field(
        None, description="a string, or a list of text parts ({type: text, text}); other part types are refused")
    reasoning_content: Optional[str] = Field(None, description="accepted in history and dropped, as R1's usage says")
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = Field(None, description="an assistant's earlier tool calls (history)")
    tool_call_id: Optional[str] = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, part in enumerate(v):
                kind = part.get("type")
                if kind not in ("text", "refusal"):
                    raise unsupported(f"part {i} is of type {kind!r}: r1 serve takes text only")
                value = part.get(kind)
                if not isinstance(value, str):
                    raise PydanticCustomError("invalid_value", f"part {i} needs a string field {kind!r}")
        return v

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get(part["type"]) for part in self.content)


class FunctionDef(_Request):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="letters, digits, _ . - (at most 64)")
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = Field(None, description="the arguments' JSON schema")
    strict: Optional[bool] = Field(None, description="accepted; the arguments are not constrained while decoding")


class ToolDef(_Request):
    type: str = "function"
    function: FunctionDef

    @field_validator("type")
    @classmethod
    def _function_tools(cls, v: str) -> str:
        if v != "function":
            raise unsupported(f"tools of type {v!r} are not supported by r1 serve (only 'function')")
        return v


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    model: Optional[str] = None
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: Union[str, list[str], None] = Field(None, description="up to 4 strings, cut from the answer")
    seed: Optional[int] = Field(None, ge=INT64_MIN, le=INT64_MAX,
                                description="choice i is sampled with seed + i, which must stay in int64")
    stream: bool = False
    stream_options: Optional[StreamOptions] = Field(None, description="only with stream: true")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="only 0 is supported")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="only 0 is supported")
    logit_bias: Optional[dict[str, Any]] = Field(None, description="not supported: a non-empty map is refused")
    ignore_eos: bool = Field(False, description="vLLM's extra: generate max_tokens whatever comes (benchmarks)")
    # accepted and ignored on purpose: they change nothing about the answer
    user: Optional[str] = None
    metadata: Optional[dict[str, Any]] = None
    store: Optional[bool] = None
    service_tier: Optional[str] = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> Any:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        if any(len(s) > 1000 for s in stops):
            raise ValueError("a stop sequence may be at most 1000 characters")
        return v

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        n = info.data.get("n", 1)
        if v is not None and v + n - 1 > INT64_MAX:
            raise ValueError(f"seed + n - 1 must be at most {INT64_MAX} (choice i uses seed + i)")
        return v

    @field_validator("stream_options")
    @classmethod
    def _only_streaming(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and not info.data.get("stream", False):
            raise ValueError("stream_options is only allowed when stream is true")
        return v

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalties(cls, v: float) -> float:
        if v:
            raise unsupported("penalties are not supported by r1 serve's sampler (use 0)")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, v: Any) -> Any:
        if v:
            raise unsupported("logit_bias is not supported by r1 serve's sampler")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(self) -> tuple[float, float]:
        t = R1_TEMPERATURE if self.temperature is None else self.temperature
        p = R1_TOP_P if self.top_p is None else self.top_p
        return t, p

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _refuse_if_set(message: str):
    def check(cls: Any, v: Any) -> Any:
        if v:
            raise unsupported(message)
        return v

    return check


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = Field(False, description="log-probabilities of the sampled tokens (the model's, before "
                                              "temperature and top-p)")
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="needs logprobs: true")
    tools: Optional[list[ToolDef]] = Field(None, max_length=128, description="functions the model may call")
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = Field(
        None, description="none: answer with text; auto (the default with tools): the model decides; required or "
        "a named function: a call is asked for (see the serving guide for a model that answers without one)")
    parallel_tool_calls: Optional[bool] = Field(None, description="false: at most one call per answer")
    functions: Optional[list[Any]] = Field(None, description="not supported (legacy tools): use tools")
    function_call: Optional[Any] = Field(None, description="only 'none' is accepted (legacy): use tool_choice")
    response_format: Optional[dict[str, Any]] = Field(None, description="only {type: text} is accepted")
    modalities: Optional[list[str]] = Field(None, description="only ['text'] is accepted")
    audio: Optional[dict[str, Any]] = Field(None, description="not supported")
    prediction: Optional[dict[str, Any]] = Field(None, description="not supported")
    raw_content: bool = Field(False, description="r1's extra: the content as the model wrote it; by default a model "
                                                 "trained to answer inside <answer> tags is answered with what is "
                                                 "inside them, as DeepSeek's API answers")
    # accepted and ignored on purpose (effort is the model's own)
    reasoning_effort: Optional[str] = None

    _no_functions = field_validator("functions")(classmethod(_refuse_if_set(
        "the legacy functions parameter is not supported by r1 serve; declare them as tools")))
    _no_audio = field_validator("audio", "prediction")(classmethod(_refuse_if_set(
        "not supported by r1 serve (text in, text out)")))

    @field_validator("messages")
    @classmethod
    def _has_a_turn(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if all(m.role == "assistant" for m in v):
            raise ValueError("messages must contain a user, system or tool message, not only assistant turns")
        return v

    @field_validator("tools")
    @classmethod
    def _distinct_names(cls, v: Optional[list[ToolDef]]) -> Optional[list[ToolDef]]:
        names = [t.function.name for t in v or ()]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be distinct")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice_of_declared(cls, v: Any, info: ValidationInfo) -> Any:
        names = [t.function.name for t in info.data.get("tools") or ()]
        if isinstance(v, NamedToolChoice) and v.function.name not in names:
            raise ValueError(f"tool_choice names {v.function.name!r}, which is not among the tools")
        if v == "required" and not names:
            raise ValueError("tool_choice 'required' needs tools")
        return v

    @field_validator("function_call")
    @classmethod
    def _legacy_choice_none(cls, v: Any) -> Any:
        if v is not None and v != "none":
            raise unsupported("function_call is not supported by r1 serve; use tools and tool_choice")
        return v

    def tool_names(self) -> list[str]:
        """The functions the model may call in this answer ([] with tool_choice none)."""
        if self.tool_choice == "none":
            return []
        if isinstance(self.tool_choice, NamedToolChoice):
            return [self.tool_choice.function.name]
        return [t.function.name for t in self.tools or ()]

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, v: Any) -> Any:
        if v is not None and v.get("type") != "text":
            raise unsupported(f"response_format {v.get('type')!r} is not supported by r1 serve (no constrained "
                              "decoding); ask for JSON in the prompt and parse the content")
        return v

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, v: Any) -> Any:
        if v is not None and any(m != "text" for m in v):
            raise unsupported("r1 serve answers with text only")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    def token_limit(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens

    def logprob_count(self) -> Optional[int]:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]] = Field(
        ..., description="one prompt: a string or a list of token ids (or a list holding one of them)")
    max_tokens: int = Field(16, ge=1)  # OpenAI's default for /v1/completions
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                    description="log-probabilities of the sampled tokens and this many alternatives")
    suffix: Optional[str] = Field(None, description="not supported")
    best_of: Optional[int] = Field(None, ge=1, description="only 1 (or equal to n) is accepted")

    _no_suffix = field_validator("suffix")(classmethod(_refuse_if_set("suffix (insertion) is not supported")))

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and v and isinstance(v[0], (str, list)):
            if len(v) != 1:
                raise ValueError("give one prompt (a string or token ids, or a list of one of them)")
            v = v[0]
        if isinstance(v, list) and not v:
            raise ValueError("the prompt is empty")
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v not in (None, 1, info.data.get("n")):
            raise unsupported("best_of is not supported (leave it out, or set it equal to n)")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_prompt_logprobs(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and info.data.get("echo"):
            raise unsupported("echo with logprobs (log-probabilities of the prompt) is not supported")
        return v

    def token_limit(self) -> int:
        return self.max_tokens

    def logprob_count(self) -> Optional[int]:
        return self.logprobs

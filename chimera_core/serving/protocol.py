"""OpenAI chat-completions wire format (the subset Chimera serves, plus vLLM's token ids)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20


class _Lenient(BaseModel):
    """Unknown fields are ignored: clients (LangChain, LiteLLM, vLLM callers) send extras."""

    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    """One part of a multi-part message; only text is served."""

    type: str
    text: str | None = None


class FunctionCall(_Lenient):
    """A function call inside an assistant message."""

    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Lenient):
    """An OpenAI tool call (in requests: earlier assistant turns; in responses: parsed output)."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text (parts joined); non-text parts are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content part of type {part.type!r} is not supported (text only)")
            texts.append(part.text)
        return "\n".join(texts)


class FunctionSpec(_Lenient):
    """A tool's function signature."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(_Lenient):
    """A tool offered to the model."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedToolChoice(_Lenient):
    """``tool_choice`` naming one function."""

    type: Literal["function"] = "function"
    function: dict[str, str]

    @property
    def name(self) -> str:
        """The forced function's name."""
        return self.function.get("name", "")


class ResponseFormat(_Lenient):
    """``response_format``: text, a JSON object, or a JSON schema.

    A flat object schema is enforced (keys fixed, values generated); any other schema is
    prompted and decoded in JSON mode.
    """

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class StreamOptions(_Lenient):
    """``stream_options``."""

    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """A ``POST /v1/chat/completions`` body."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    # vLLM extensions.
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    return_token_ids: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return [s for s in stops if s] if stops is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            offered = {t.function.name for t in self.tools or []}
            if self.tool_choice.name not in offered:
                raise ValueError(
                    f"tool_choice names {self.tool_choice.name!r}, which is not in tools"
                )
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    @property
    def token_budget(self) -> int | None:
        """The completion token cap (``max_completion_tokens`` wins over ``max_tokens``)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def json_mode(self) -> bool:
        """Whether the reply must be a JSON object."""
        return self.response_format is not None and self.response_format.type != "text"

    @property
    def wants_logprobs(self) -> bool:
        """``logprobs`` true (OpenAI) or a positive count (LiteLLM/vLLM callers send 1)."""
        return bool(self.logprobs)


# ---------------------------------------------------------------- responses


def completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    """Unix time for ``created``."""
    return int(time.time())


class TopLogprob(BaseModel):
    """An alternative token at one position."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(TopLogprob):
    """The chosen token at one position, with alternatives."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """``choices[i].logprobs``."""

    content: list[TokenLogprobOut]


class ResponseMessage(BaseModel):
    """The assistant's reply."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    """One generated alternative, with vLLM's ``token_ids``."""

    index: int
    message: ResponseMessage
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int]


class Usage(BaseModel):
    """Token counts."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A non-streaming response, with vLLM's top-level ``prompt_token_ids``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    prompt_token_ids: list[int]


class Delta(BaseModel):
    """What a stream chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    """One choice's piece of a stream chunk."""

    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int] | None = None


class ChatCompletionChunk(BaseModel):
    """A streaming ``chat.completion.chunk``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    prompt_token_ids: list[int] | None = None


class LoadModelRequest(BaseModel):
    """``POST /admin/models``: serve ``path`` under ``name`` (replacing what was there)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    path: str = Field(min_length=1)


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope, which the openai SDK turns into a readable exception."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class ApiError(Exception):
    """A request the server refuses, with its HTTP status (answered in OpenAI's error format)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind

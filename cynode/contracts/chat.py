"""The chat surface of the gateway (agents.md §3, §4): the OpenAI-compatible Chat Completions bodies, pinned to the
reference of 2026-02-22, and the chat threads REST bodies.

The OpenAI request structs ignore unknown fields (REQ-USRGWY-0127) and type fields loosely enough that the service,
not the decoder, gives the precise 400 (`param` naming the field). The thread bodies are strict, as every REST body.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PM_MODEL = "cynodeai.pm"
OPENAI_VERSION = "2020-10-01"

# -- OpenAI request --------------------------------------------------------------------------------------------------


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


class MessageIn(msgspec.Struct, frozen=True):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


class ChatCompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[MessageIn]
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None


class WarmRequest(msgspec.Struct, frozen=True):
    model: str | None = None


# -- OpenAI responses ------------------------------------------------------------------------------------------------


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(msgspec.Struct, frozen=True):
    content: str
    role: Literal["assistant"] = "assistant"


class Choice(msgspec.Struct, frozen=True):
    index: int
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"


class Delta(msgspec.Struct, frozen=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct, frozen=True):
    index: int
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"]  # no default, so omit_defaults keeps it
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None  # only the include_usage chunk


class Model(msgspec.Struct, frozen=True):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, frozen=True):
    data: list[Model]
    object: Literal["list"] = "list"


class ErrorBody(msgspec.Struct, frozen=True):
    message: str
    type: str
    param: str | None
    code: str


class ErrorResponse(msgspec.Struct, frozen=True):
    error: ErrorBody


class WarmStatus(msgspec.Struct, frozen=True):
    status: Literal["warming", "already_warm"]


# -- chat threads REST -----------------------------------------------------------------------------------------------


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    project_id: str | None = None
    title: str | None = None


class ThreadOut(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: str
    project_id: str
    title: str | None
    created_at: str
    updated_at: str


class ThreadList(msgspec.Struct, frozen=True, omit_defaults=True):
    threads: list[ThreadOut]
    next_cursor: str | None = None


class MessageCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: str
    content: str


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    thread_id: str
    role: str
    content: str
    metadata: dict[str, Any] | None
    redaction_kinds: list[str]
    created_at: str


class MessageList(msgspec.Struct, frozen=True, omit_defaults=True):
    messages: list[MessageOut]
    next_cursor: str | None = None

"""Inference wire shapes: Ollama's API (`/api/*`), the OpenAI-compatible subset (`/v1/*`) and the model status the
worker puts into its capability report (DECISIONS.md 4).

Requests decode leniently (unknown fields are ignored, as Ollama does). Optional response fields are omitted when
unset so encoded bodies look like Ollama's own; fields Ollama always sends (a chat message's `content`, an OpenAI
choice's `finish_reason: null`) are always encoded, because clients index them without checking.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

# ---------------------------------------------------------------------------------------------------------- Ollama


class ModelOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Ollama's `options`; None = the server's default."""

    num_ctx: int | None = None
    num_predict: int | None = None  # -1: until the model stops or the context is full; -2: fill the context
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    num_keep: int | None = None
    num_thread: int | None = None


class ChatMessage(msgspec.Struct, kw_only=True):
    role: str
    content: str = ""
    images: list[str] | UnsetType = UNSET
    tool_calls: list[dict[str, Any]] | UnsetType = UNSET
    thinking: str | UnsetType = UNSET


# `format`: "" | "json" | a JSON schema object. `keep_alive`: seconds or a Go duration ("5m"); negative = forever.
Format = str | dict[str, Any] | None
KeepAlive = float | str | None


class GenerateRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[str] | None = None
    format: Format = None
    options: ModelOptions | None = None
    stream: bool = True
    raw: bool = False
    keep_alive: KeepAlive = None
    think: bool | str | None = None


class ChatRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    messages: list[ChatMessage] = msgspec.field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: Format = None
    options: ModelOptions | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None


class GenerateResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One NDJSON line of a streamed /api/generate, or the whole non-streamed answer (done=true)."""

    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    context: list[int] | None = None
    total_duration: int | None = None  # all durations in nanoseconds, as Ollama reports them
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ChatResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    message: ChatMessage
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ModelDetails(msgspec.Struct, kw_only=True):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] = msgspec.field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""


class ModelSummary(msgspec.Struct, kw_only=True):
    """One entry of GET /api/tags."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails = msgspec.field(default_factory=ModelDetails)


class TagsResponse(msgspec.Struct):
    models: list[ModelSummary]


class ShowRequest(msgspec.Struct, kw_only=True):
    model: str = ""
    name: str = ""  # older clients send `name`
    verbose: bool = False


class ShowResponse(msgspec.Struct, kw_only=True):
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    license: str = ""
    details: ModelDetails = msgspec.field(default_factory=ModelDetails)
    model_info: dict[str, Any] = msgspec.field(default_factory=dict)
    capabilities: list[str] = msgspec.field(default_factory=list)
    modified_at: str = ""


class RunningModel(msgspec.Struct, kw_only=True):
    """One entry of GET /api/ps: a model loaded in memory now."""

    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails = msgspec.field(default_factory=ModelDetails)
    expires_at: str = ""
    size_vram: int = 0
    context_length: int = 0


class PsResponse(msgspec.Struct):
    models: list[RunningModel]


class VersionResponse(msgspec.Struct):
    version: str


class PullRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: bool = True


class ProgressResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A line of /api/pull progress; the last one says status "success"."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ErrorResponse(msgspec.Struct):
    error: str


# ------------------------------------------------------------------------------------------ capability reporting

ModelState = Literal["available", "loading", "failed"]


class ModelStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A model the node offers: `available` = loadable now; `loaded` = in memory (what /api/ps shows)."""

    name: str
    status: ModelState
    size_bytes: int | None = None
    digest: str | None = None
    detail: str | None = None  # why it failed
    loaded: bool = False


# ---------------------------------------------------------------------------------------------------------- OpenAI


class OpenAIContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: str = ""


class OpenAIMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str
    content: str | list[OpenAIContentPart] | None = None
    name: str | None = None


class OpenAIResponseFormat(msgspec.Struct, kw_only=True):
    type: str  # text | json_object | json_schema
    json_schema: dict[str, Any] | None = None  # {"name": ..., "schema": {...}}


class OpenAIStreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class _OpenAISampling(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stream_options: OpenAIStreamOptions | None = None
    n: int = 1


class OpenAIChatRequest(_OpenAISampling, kw_only=True, omit_defaults=True):
    messages: list[OpenAIMessage]
    max_completion_tokens: int | None = None
    response_format: OpenAIResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None


class OpenAICompletionRequest(_OpenAISampling, kw_only=True, omit_defaults=True):
    prompt: str | list[str]


class OpenAIUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OpenAIAssistantMessage(msgspec.Struct):
    role: str
    content: str


class OpenAIChoice(msgspec.Struct):
    index: int
    message: OpenAIAssistantMessage
    finish_reason: str | None


class OpenAIChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[OpenAIChoice]
    usage: OpenAIUsage


class OpenAIDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class OpenAIChunkChoice(msgspec.Struct):
    index: int
    delta: OpenAIDelta
    finish_reason: str | None  # null until the last chunk, as OpenAI sends it


class OpenAIChatChunk(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[OpenAIChunkChoice]
    usage: OpenAIUsage | UnsetType = UNSET


class OpenAICompletionChoice(msgspec.Struct):
    text: str
    index: int
    logprobs: None
    finish_reason: str | None


class OpenAICompletion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[OpenAICompletionChoice]
    usage: OpenAIUsage | UnsetType = UNSET


class OpenAIModel(msgspec.Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "library"


class OpenAIModelList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[OpenAIModel]


class OpenAIErrorBody(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(msgspec.Struct):
    error: OpenAIErrorBody

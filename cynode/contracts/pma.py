"""The PMA handoff (agents.md §2.4): what the gateway sends the Project Manager agent and what comes back."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec


class PmaMessage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class PmaProject(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    slug: str
    display_name: str


class PmaChatRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    version: int
    request_id: str
    user_id: str
    project_id: str
    messages: list[PmaMessage]
    deadline_ms: int
    thread_id: str | None = None
    additional_context: str | None = None
    project: PmaProject | None = None
    task_id: str | None = None


class PmaUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class PmaToolCall(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    status: Literal["ok", "error", "denied"]
    error_type: str | None = None


class PmaChatResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    content: str
    model: str
    usage: PmaUsage | None = None
    tool_calls: list[PmaToolCall] | None = None


class PmaHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    state: Literal["starting", "ready", "unhealthy"]
    role: str
    detail: str | None = None


class PmaError(Exception):
    """A PMA failure with the code of agents.md §2.4 (invalid_request 400, inference_failed 502, busy 503,
    deadline_exceeded 504, not_found 404 in the analyst role)."""

    STATUS = {"invalid_request": 400, "not_found": 404, "inference_failed": 502, "busy": 503,
              "deadline_exceeded": 504, "unavailable": 503}

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = self.STATUS.get(code, 500)


class PmaClient(Protocol):
    """How the gateway reaches the PMA: in-process when colocated, HTTP with the service token otherwise."""

    async def chat(self, request: PmaChatRequest) -> PmaChatResponse: ...

    async def health(self) -> PmaHealth: ...

"""OpenAI-shaped errors for `/v1/models`, `/v1/chat/completions` and `/v1/chat/warm` (agents.md §3.7), never
problem+json. The router of those endpoints installs `OPENAI_EXCEPTION_HANDLERS`, so the guard's own refusals (401,
429, "starting") come out in this shape too; a request that was authenticated but refused before the chat service
saw it still gets its `chat_audit_log` row here.

Messages are fixed, safe texts: never secrets, upstream bodies, stack traces or internal URLs.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException

from cynode.contracts.chat import OPENAI_VERSION, ErrorBody, ErrorResponse
from cynode.errors import DomainError, Unavailable
from cynode.http.problems import request_id_of

log = logging.getLogger("cynode.gateway.chat")

ERROR_TYPE = "cynodeai_error"


class ChatError(Exception):
    """A chat failure with the status, `code` and `param` the client sees."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.audited = False  # its chat_audit_log row is written

    @property
    def outcome(self) -> str:
        """The chat_audit_log outcome this error stands for."""
        if self.code == "cynodeai_completion_timeout":
            return "timeout"
        if self.code == "cynodeai_request_canceled":
            return "canceled"
        return "error"


RETRY_5 = {"Retry-After": "5"}


def invalid(message: str, param: str | None = None) -> ChatError:
    return ChatError(400, "invalid_request", message, param=param)


def unsupported_content(param: str) -> ChatError:
    return ChatError(400, "unsupported_content", "only text content parts are supported", param=param)


def model_not_found() -> ChatError:
    return ChatError(404, "model_not_found", "the model does not exist or you do not have access to it",
                     param="model")


def project_not_found() -> ChatError:
    return ChatError(404, "project_not_found", "the project does not exist or you do not have access to it",
                     param="OpenAI-Project")


def too_large() -> ChatError:
    return ChatError(413, "payload_too_large", "the request body exceeds the limit for this endpoint")


def rate_limited(retry_after: int = 1) -> ChatError:
    return ChatError(429, "rate_limit_exceeded", "too many concurrent chat requests; retry shortly",
                     headers={"Retry-After": str(retry_after)})


def overloaded() -> ChatError:
    return ChatError(503, "cynodeai_overloaded", "the gateway is handling too many chat requests; retry shortly",
                     headers=RETRY_5)


def pm_unavailable() -> ChatError:
    return ChatError(503, "cynodeai_pm_unavailable", "the Project Manager agent is not available; retry shortly",
                     headers=RETRY_5)


def inference_unavailable() -> ChatError:
    return ChatError(503, "cynodeai_inference_unavailable", "no inference backend is available for this model",
                     headers=RETRY_5)


def inference_failed() -> ChatError:
    return ChatError(502, "cynodeai_inference_failed", "the model failed to produce an answer")


def timeout() -> ChatError:
    return ChatError(504, "cynodeai_completion_timeout", "the completion did not finish within the wait limit")


def canceled() -> ChatError:
    return ChatError(408, "cynodeai_request_canceled", "the request was canceled by the client")


def internal() -> ChatError:
    return ChatError(500, "internal_error", "internal error")


# status -> code for errors raised outside the chat service (the guard, litestar itself)
_CODES = {400: "invalid_request", 401: "authentication_required", 403: "permission_denied", 404: "not_found",
          405: "invalid_request", 408: "cynodeai_request_canceled", 413: "payload_too_large",
          415: "invalid_request", 429: "rate_limit_exceeded", 503: "cynodeai_overloaded",
          504: "cynodeai_completion_timeout"}


def from_exception(exc: BaseException) -> ChatError:
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, DomainError):
        err = ChatError(exc.status, _CODES.get(exc.status, "internal_error"),
                        exc.detail if exc.status < 500 else "the service is not available; retry shortly",
                        headers=dict(exc.headers))
        if exc.status == 503:
            err.headers.setdefault("Retry-After", "5")
        if exc.status >= 500 and exc.status != 503:
            err.message = "internal error"
        return err
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 413:
            return too_large()
        if status < 500:
            return ChatError(status, _CODES.get(status, "invalid_request"), str(exc.detail),
                             headers=dict(exc.headers or {}))
    if isinstance(exc, psycopg.DataError):
        return invalid("a value in the request is not acceptable")
    if isinstance(exc, psycopg.OperationalError):  # the database is out of reach: retry, like any 503
        return from_exception(Unavailable("the database is unavailable", headers={"Retry-After": "5"}))
    return internal()


def error_body(err: ChatError) -> bytes:
    return msgspec.json.encode(ErrorResponse(ErrorBody(message=err.message, type=ERROR_TYPE, param=err.param,
                                                       code=err.code)))


def openai_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"openai-version": OPENAI_VERSION, **(extra or {})}


def error_response(err: ChatError) -> Response[bytes]:
    headers = openai_headers(err.headers)
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return Response(error_body(err), status_code=err.status, media_type="application/json", headers=headers)


def _handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    err = from_exception(exc)
    if err.code == "internal_error" and not isinstance(exc, ChatError):
        log.error("unhandled chat error", exc_info=exc, extra={"request_id": request_id_of(request),
                                                                "route": request.url.path})
    state = request.scope.get("state", {})
    services = state.get("gateway")
    chat = getattr(services, "chat", None)
    if chat is not None:
        chat.audit_refusal(state, err)
    return error_response(err)


OPENAI_EXCEPTION_HANDLERS: Any = {
    ChatError: _handle,
    DomainError: _handle,
    HTTPException: _handle,
    psycopg.DataError: _handle,
    psycopg.OperationalError: _handle,
    Exception: _handle,
}

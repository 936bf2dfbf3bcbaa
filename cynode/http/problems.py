"""RFC 9457 problem+json: the one place where errors become HTTP responses (DECISIONS.md 1)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException

from cynode.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:cynodeai:error:"

# status -> (code, title) for errors litestar raises itself (routing, body limits, methods).
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("validation", "Validation Failed"),
    401: ("authentication", "Unauthorized"),
    403: ("authorization", "Forbidden"),
    404: ("not_found", "Not Found"),
    405: ("method_not_allowed", "Method Not Allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload Too Large"),
    415: ("unsupported_media_type", "Unsupported Media Type"),
    429: ("rate_limit", "Too Many Requests"),
    431: ("validation", "Request Header Fields Too Large"),
    503: ("service_unavailable", "Service Unavailable"),
    500: ("internal", "Internal Server Error"),
}


class ProblemField(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemField] | None = None


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem(
    status: int,
    detail: str,
    *,
    request_id: str,
    code: str | None = None,
    title: str | None = None,
    errors: list[ProblemField] | None = None,
    headers: dict[str, str] | None = None,
    type_: str | None = None,
) -> Response[bytes]:
    default_code, default_title = _BY_STATUS.get(status, ("internal", "Error"))
    body = Problem(
        type=type_ or TYPE_PREFIX + (code or default_code),
        title=title or default_title,
        status=status,
        detail=detail,
        instance=request_id,
        errors=errors or None,
    )
    hdrs = dict(headers or {})
    if status == 401:
        hdrs.setdefault("WWW-Authenticate", "Bearer")
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=hdrs)


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem(
        exc.status,
        exc.detail or exc.title,
        request_id=request_id_of(request),
        code=exc.code,
        title=exc.title,
        errors=[ProblemField(e.field, e.message) for e in exc.errors],
        headers=exc.headers,
        type_=getattr(exc, "type_uri", None),
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail if status < 500 else "internal error"
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [
            ProblemField(str(e.get("key", "")), str(e.get("message", "")))
            for e in exc.extra
            if isinstance(e, dict)
        ]
        detail = "request validation failed"
    if status == 413:
        detail = "request body exceeds the limit for this endpoint"
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem(status, str(detail), request_id=request_id_of(request), errors=errors, headers=headers)


def _database(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    rid = request_id_of(request)
    log.warning("database unavailable", extra={"request_id": rid, "route": request.url.path,
                                               "error": type(exc).__name__})
    return problem(503, "the database is unavailable; retry shortly", request_id=rid, headers={"Retry-After": "5"})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    rid = request_id_of(request)
    log.error("unhandled error", exc_info=exc, extra={"request_id": rid, "route": request.url.path})
    return problem(500, "internal error", request_id=rid)


EXCEPTION_HANDLERS: Any = {
    DomainError: _domain,
    HTTPException: _http,
    psycopg.OperationalError: _database,  # connection lost, pool timeout, statement timeout (orchestrator.md §2)
    Exception: _unexpected,
}

"""The outer ASGI layer of every listener: request ids, exact paths, header size, a startup gate and the request log.

It wraps the whole litestar app (so it also sees requests that match no route) and stays cheap: no body access,
one dict lookup per header.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec
import ulid

from cynode.http.problems import PROBLEM_JSON, TYPE_PREFIX, Problem

log = logging.getLogger("cynode.http")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
MAX_HEADER_BYTES = 64 * 1024
OPEN_PATHS = ("/healthz", "/readyz")
RESPONSE_STATUS = "response_status"  # scope["state"] key: the status once the response has started

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


def new_request_id() -> str:
    return ulid.new().str


async def _send_problem(
    send: Any, status: int, code: str, title: str, detail: str, rid: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    problem = Problem(type=TYPE_PREFIX + code, title=title, status=status, detail=detail, instance=rid)
    body = msgspec.json.encode(problem)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, listener: str, accepting: Callable[[], bool] = lambda: True) -> None:
        self.app = app
        self.listener = listener
        self.accepting = accepting

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = ""
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                rid = value.decode()
        rid = rid or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        path: str = scope["path"]
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state[RESPONSE_STATUS] = message["status"]  # also read by the gateway guard for its audit row
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            if size > MAX_HEADER_BYTES:
                state[RESPONSE_STATUS] = 431
                await _send_problem(send, 431, "validation", "Request Header Fields Too Large",
                                    "request headers exceed 64 KiB", rid)
            elif len(path) > 1 and path.endswith("/"):
                state[RESPONSE_STATUS] = 404
                await _send_problem(send, 404, "not_found", "Not Found", f"no route for {path}", rid)
            elif path not in OPEN_PATHS and not self.accepting():
                state[RESPONSE_STATUS] = 503
                await _send_problem(send, 503, "service_unavailable", "Service Unavailable",
                                    "the server is starting; retry shortly", rid, [(b"retry-after", b"2")])
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            if path not in OPEN_PATHS and log.isEnabledFor(logging.INFO):
                route = state.get("route") or path
                extra: dict[str, Any] = {
                    "listener": self.listener,
                    "request_id": rid,
                    "method": scope["method"],
                    "route": route,
                    "status": state.get(RESPONSE_STATUS, 500),
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                }
                for key in ("user_id", "node_id", "subject_type"):
                    if key in state:
                        extra[key] = state[key]
                log.info("request", extra=extra)

"""The PMA's own listener for split deployments: `POST /internal/chat/completion` with the service token
(agents.md §2.4). Errors use the PMA's `{error:{code,message}}` shape; the gateway maps them to OpenAI errors."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import Request, Response, post

from cynode.contracts.pma import PmaChatRequest, PmaError
from cynode.pma.service import PmaService
from cynode.utf8 import decode_json

MAX_BODY = 10 * 1024 * 1024


def _error(code: str, message: str, status: int) -> Response[bytes]:
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def pma_routes(service: PmaService, token: str) -> list[Any]:
    @post("/internal/chat/completion", request_max_body_size=MAX_BODY, status_code=200)
    async def completion(request: Request[Any, Any, Any]) -> Response[bytes]:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _error("unauthorized", "a valid service token is required", 401)
        try:
            req = decode_json(await request.body(), PmaChatRequest)
        except msgspec.DecodeError as e:
            return _error("invalid_request", str(e), 400)
        try:
            reply = await service.chat(req)
        except PmaError as e:
            return _error(e.code, str(e), e.status)
        return Response(msgspec.json.encode(reply), status_code=200, media_type="application/json")

    return [completion]

"""Chat routes: the OpenAI-compatible endpoints (OpenAI-shaped errors, their own router) and the thread REST
(problem+json like every other REST route). Thin handlers over ChatService and ThreadService."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.response import Stream

from cynode.config import Settings
from cynode.contracts.chat import (
    ChatCompletion,
    MessageCreate,
    MessageList,
    MessageOut,
    ThreadCreate,
    ThreadList,
    ThreadOut,
    WarmRequest,
)
from cynode.errors import Unavailable
from cynode.gateway.chat import errors
from cynode.gateway.chat.errors import OPENAI_EXCEPTION_HANDLERS, openai_headers
from cynode.gateway.chat.service import ChatCall, ChatService
from cynode.gateway.chat.threads import ThreadService
from cynode.gateway.deps import PathStr
from cynode.gateway.guard import caller, policy, services_of
from cynode.gateway.validation import read_body
from cynode.http.pagination import parse_limit
from cynode.http.problems import request_id_of
from cynode.utf8 import decode_json

Req = Request[Any, Any, Any]

_encode = msgspec.json.Encoder().encode


def chat_of(request: Req) -> ChatService:
    svc: ChatService | None = services_of(request).chat
    if svc is None:
        raise Unavailable("chat is starting; retry shortly", headers={"Retry-After": "2"})
    return svc


def threads_of(request: Req) -> ThreadService:
    svc: ThreadService | None = services_of(request).threads
    if svc is None:
        raise Unavailable("chat is starting; retry shortly", headers={"Retry-After": "2"})
    return svc


async def read_capped(request: Req, limit: int) -> bytes:
    """The whole body, or 413 (OpenAI-shaped) as soon as it passes `limit`."""
    announced = request.headers.get("content-length", "")
    if announced.isascii() and announced.isdigit() and int(announced) > limit:
        raise errors.too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def disconnect_waiter(request: Req) -> Any:
    """Returns when the client goes away (once the body is read, the next ASGI message is the disconnect)."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


def _json(value: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(value), status_code=status, media_type="application/json", headers=openai_headers())


def openai_router(settings: Settings) -> Router:
    limit = settings.gateway.max_chat_body_bytes

    @get("/v1/models", opt=policy("model.list", "chat"))
    async def list_models(request: Req) -> Response[bytes]:
        return _json(await chat_of(request).models())

    @post("/v1/chat/completions", status_code=200, request_max_body_size=limit + 1,
          opt=policy("completion", "chat", timeout_s=settings.chat.request_timeout_s))
    async def completions(request: Req) -> Response[Any]:
        chat = chat_of(request)
        _, principal = caller(request)
        result = await chat.completion(principal, ChatCall(
            request_id=request_id_of(request), read_body=lambda: read_capped(request, limit),
            project=request.headers.get("openai-project"), disconnected=disconnect_waiter(request)))
        if isinstance(result, ChatCompletion):
            return _json(result)
        return Stream(result.body(), media_type="text/event-stream",
                      headers=openai_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))

    @post("/v1/chat/warm", status_code=202, opt=policy("warm", "chat"))
    async def warm(request: Req) -> Response[bytes]:
        raw = await read_capped(request, 64 * 1024)
        model = request.query_params.get("model")
        if raw.strip():
            try:
                body = decode_json(raw, WarmRequest)
            except (msgspec.ValidationError, msgspec.DecodeError):
                raise errors.invalid("the body must be a JSON object {model?}") from None
            model = body.model if body.model is not None else model
        return _json(await chat_of(request).warm(model), 202)

    return Router(path="/", route_handlers=[list_models, completions, warm],
                  exception_handlers=OPENAI_EXCEPTION_HANDLERS)


def thread_routes(settings: Settings) -> list[Any]:
    message_limit = settings.gateway.max_chat_body_bytes

    @post("/v1/chat/threads", status_code=201, opt=policy("thread.create", "chat"))
    async def create_thread(request: Req) -> ThreadOut:
        _, principal = caller(request)
        body = await read_body(request, ThreadCreate, allow_empty=True)
        return await threads_of(request).create(principal, body, request.headers.get("openai-project"))

    @get("/v1/chat/threads", opt=policy("thread.list", "chat"))
    async def list_threads(request: Req) -> ThreadList:
        _, principal = caller(request)
        qp = request.query_params
        return await threads_of(request).list_threads(principal, qp.get("project_id"), parse_limit(qp.get("limit")),
                                                      qp.get("cursor"))

    @get("/v1/chat/threads/{thread_id:str}", opt=policy("thread.read", "chat"))
    async def get_thread(request: Req, thread_id: PathStr) -> ThreadOut:
        _, principal = caller(request)
        return await threads_of(request).get(principal, thread_id)

    @post("/v1/chat/threads/{thread_id:str}/messages", status_code=201, request_max_body_size=message_limit,
          opt=policy("message.create", "chat"))
    async def post_message(request: Req, thread_id: PathStr) -> MessageOut:
        _, principal = caller(request)
        body = await read_body(request, MessageCreate)
        return await threads_of(request).post_message(principal, thread_id, body, request_id_of(request))

    @get("/v1/chat/threads/{thread_id:str}/messages", opt=policy("message.list", "chat"))
    async def list_messages(request: Req, thread_id: PathStr) -> MessageList:
        _, principal = caller(request)
        qp = request.query_params
        return await threads_of(request).messages(principal, thread_id, parse_limit(qp.get("limit")),
                                                  qp.get("cursor"))

    return [create_thread, list_threads, get_thread, post_message, list_messages]

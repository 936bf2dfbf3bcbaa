"""Task routes (orchestrator.md §6): thin handlers over TaskService."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post

from cynode.config import Settings
from cynode.contracts.tasks import ArtifactList, TaskCanceled, TaskList, TaskLogs, TaskOut, TaskResult
from cynode.errors import FieldError, Invalid, PayloadTooLarge, UnsupportedMediaType
from cynode.gateway.deps import PathStr
from cynode.gateway.guard import caller, policy
from cynode.http.pagination import parse_limit

Req = Request[Any, Any, Any]

MULTIPART_TIMEOUT_S = 60.0


async def read_capped(request: Req, limit: int) -> bytes:
    """The whole body, or 413 as soon as it passes `limit` (the route's own limit is the larger multipart one)."""
    announced = request.headers.get("content-length", "")
    if announced.isascii() and announced.isdigit() and int(announced) > limit:
        raise PayloadTooLarge("request body exceeds the limit for this endpoint")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("request body exceeds the limit for this endpoint")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_disposition(name: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def task_routes(settings: Settings) -> list[Any]:
    gws = settings.gateway

    @post("/v1/tasks", status_code=201, request_max_body_size=gws.max_task_multipart_bytes,
          opt=policy("create", "task", timeout_s=MULTIPART_TIMEOUT_S))
    async def create_task(request: Req) -> TaskOut:
        gw, principal = caller(request)
        media, options = request.content_type
        if media == "application/json":
            return await gw.tasks.create_json(principal, await read_capped(request, gws.max_task_json_bytes))
        if media == "multipart/form-data":
            boundary = options.get("boundary")
            if not boundary:
                raise Invalid("Content-Type: multipart boundary missing", [FieldError("content-type", "no boundary")])
            return await gw.tasks.create_multipart(principal, request.stream(), boundary)
        raise UnsupportedMediaType("Content-Type must be application/json or multipart/form-data")

    @get("/v1/tasks", opt=policy("list", "task"))
    async def list_tasks(request: Req) -> TaskList:
        gw, principal = caller(request)
        qp = request.query_params
        return await gw.tasks.list_tasks(principal, parse_limit(qp.get("limit")), qp.get("cursor"), qp.get("status"))

    @get("/v1/tasks/{ref:str}", opt=policy("read", "task"))
    async def get_task(request: Req, ref: PathStr) -> TaskOut:
        gw, principal = caller(request)
        return await gw.tasks.get(principal, ref)

    @get("/v1/tasks/{ref:str}/result", opt=policy("result.read", "task"))
    async def task_result(request: Req, ref: PathStr) -> TaskResult:
        gw, principal = caller(request)
        return await gw.tasks.result(principal, ref)

    @get("/v1/tasks/{ref:str}/logs", opt=policy("logs.read", "task"))
    async def task_logs(request: Req, ref: PathStr) -> TaskLogs:
        gw, principal = caller(request)
        return await gw.tasks.logs(principal, ref, request.query_params.get("stream"))

    @post("/v1/tasks/{ref:str}/cancel", status_code=200, opt=policy("cancel", "task"))
    async def cancel_task(request: Req, ref: PathStr) -> TaskCanceled:
        gw, principal = caller(request)
        return await gw.tasks.cancel(principal, ref)

    @get("/v1/tasks/{ref:str}/artifacts", opt=policy("artifact.list", "task"))
    async def list_artifacts(request: Req, ref: PathStr) -> ArtifactList:
        gw, principal = caller(request)
        return await gw.tasks.list_artifacts(principal, ref)

    @get("/v1/tasks/{ref:str}/artifacts/{artifact_id:str}", opt=policy("artifact.read", "task"))
    async def get_artifact(request: Req, ref: PathStr, artifact_id: PathStr) -> Response[bytes]:
        gw, principal = caller(request)
        name, ctype, data = await gw.tasks.read_artifact(principal, ref, artifact_id)
        return Response(data, media_type=ctype, headers={
            "Content-Disposition": _content_disposition(name), "X-Content-Type-Options": "nosniff"})

    return [create_task, list_tasks, get_task, task_result, task_logs, cancel_task, list_artifacts, get_artifact]

"""Worker API routes (:12090, worker.md §5): health is open; everything under /v1/ needs the orchestrator bearer."""

from __future__ import annotations

from typing import Any

from litestar import Request, post

from cynode.contracts.workerapi import RunJobRequest, RunJobResponse
from cynode.errors import PayloadTooLarge, Unauthenticated
from cynode.http.body import read_json
from cynode.worker.jobs import JobRunner
from cynode.worker.manager import NodeManager


def worker_routes(manager: NodeManager, runner: JobRunner, max_body_bytes: int) -> list[Any]:
    def authorize(request: Request[Any, Any, Any]) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or not manager.check_bearer(token.strip()):
            raise Unauthenticated("a valid orchestrator bearer token is required")
        request.scope.setdefault("state", {})["subject_type"] = "orchestrator"

    @post("/v1/worker/jobs:run", request_max_body_size=max_body_bytes, status_code=200)
    async def run_job(request: Request[Any, Any, Any]) -> RunJobResponse:
        authorize(request)
        limit = (manager.config.constraints.max_request_bytes
                 if manager.config and manager.config.constraints else None)
        if limit and int(request.headers.get("content-length") or 0) > limit:
            raise PayloadTooLarge(f"the job request exceeds this node's limit of {limit} bytes")
        req = await read_json(request, RunJobRequest)
        request.scope["state"].update(task_id=req.task_id, job_id=req.job_id)
        return await runner.run(req)

    return [run_job]

"""The orchestrator's HTTP WorkerClient against real loopback servers: what each answer means for the scheduler."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import msgspec
import pytest
from aiohttp import web

from cynode.contracts.workerapi import (
    DispatchFailed,
    DispatchLost,
    DispatchRefused,
    RunJobRequest,
    SandboxSpec,
)
from cynode.controlplane.dispatch import HttpWorkerClient, WorkerDirectory

REQ = RunJobRequest(version=1, task_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()),
                    sandbox=SandboxSpec(command=["true"]))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/worker/jobs:run", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for r in runners:
        await r.cleanup()


async def call(base: str, timeout_s: float = 10.0):
    async with aiohttp.ClientSession() as session:
        return await HttpWorkerClient(session, base, "the-bearer").run_job(REQ, timeout_s)


async def test_a_result_comes_back_with_the_bearer(serve) -> None:
    seen: dict[str, str] = {}

    async def ok(request: web.Request) -> web.Response:
        seen["auth"] = request.headers["Authorization"]
        body = msgspec.json.decode(await request.read())
        return web.json_response({"version": 1, "task_id": body["task_id"], "job_id": body["job_id"],
                                  "status": "completed", "exit_code": 0, "stdout": "hi\n", "stderr": "",
                                  "started_at": "s", "ended_at": "e"})

    result = await call(await serve(ok))
    assert result.stdout == "hi\n" and seen["auth"] == "Bearer the-bearer"


@pytest.mark.parametrize("status", [429, 503, 409])
async def test_busy_or_unready_nodes_refuse(serve, status: int) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.json_response({"detail": "busy"}, status=status, headers={"Retry-After": "7"})

    with pytest.raises(DispatchRefused) as e:
        await call(await serve(busy))
    assert e.value.retry_after_s == 7


@pytest.mark.parametrize(("status", "body"), [(400, {"detail": "sandbox.command: invalid argv"}), (401, {}),
                                               (200, {"version": 2}), (200, "not json"),
                                               # bytes that are not UTF-8 inside a JSON string: a result, an error
                                               (200, b'{"version": 1, "task_id": "\xff"}'),
                                               (400, b'{"detail": "\xc3"}')])
async def test_other_answers_fail_the_job(serve, status: int, body) -> None:
    async def bad(request: web.Request) -> web.Response:
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, content_type="application/json")
        if isinstance(body, str):
            return web.Response(text=body, status=status)
        return web.json_response(body, status=status)

    with pytest.raises(DispatchFailed) as e:
        await call(await serve(bad))
    if status == 400 and isinstance(body, dict):
        assert "invalid argv" in str(e.value)


async def test_a_node_that_dies_mid_call_is_lost(serve) -> None:
    async def die(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response()

    with pytest.raises(DispatchLost):
        await call(await serve(die))


async def test_an_unreachable_node_refuses_without_costing_an_attempt() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DispatchRefused, match="cannot connect"):
        await call(f"http://127.0.0.1:{port}")


async def test_a_hung_node_times_out(serve) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    with pytest.raises(DispatchFailed, match="did not answer"):
        await call(await serve(hang), timeout_s=0.3)


async def test_the_directory_prefers_the_in_process_worker() -> None:
    local = object()
    d = WorkerDirectory(bearer_for=lambda node_id, version: f"{node_id}:{version}")
    d.local["here"] = local  # type: ignore[assignment]
    assert d.client("here", "id", "http://x", "v") is local
    remote = d.client("there", "id2", "http://y", "v2")
    assert isinstance(remote, HttpWorkerClient) and remote.bearer == "id2:v2"
    await d.close()

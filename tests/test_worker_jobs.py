"""The job runner's rules (worker.md §5.4) through the real Worker API routes, with a scripted runtime."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cynode.config import load_settings
from cynode.contracts.workerapi import RunJobRequest, SandboxSpec
from cynode.errors import Invalid
from cynode.http.app import build_app
from cynode.http.health import Readiness
from cynode.worker.api import worker_routes
from cynode.worker.jobs import JobRunner
from tests.support.fakes import ScriptedRuntime

TOKEN = "bearer-token-for-tests"


class Manager:
    """Just the bits of NodeManager the API uses: bearer check and config constraints."""

    config = None

    def check_bearer(self, token: str) -> bool:
        return token == TOKEN


def make(env: dict[str, str] | None = None, *, ready: str | None = None, runtime: ScriptedRuntime | None = None):
    s = load_settings(None, {"CYNODE_DATA_DIR": "/tmp/cynode-test", **(env or {})})
    rt = runtime or ScriptedRuntime()
    runner = JobRunner(s, rt, ready=lambda: ready)
    app = build_app("worker", worker_routes(Manager(), runner, 1024 * 1024), readiness=Readiness())  # type: ignore[arg-type]
    return runner, rt, app


def job(**sandbox: Any) -> dict[str, Any]:
    return {"version": 1, "task_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4()),
            "sandbox": {"command": ["sh", "-c", "echo hello"], **sandbox}}


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedRuntime]]:
    _runner, rt, app = make()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c, rt


async def test_run_returns_the_bounded_result_and_sets_node_env(api) -> None:
    c, rt = api
    body = job(env={"FOO": "bar", "ollama_base_url": "http://evil", "HOME": "/root"}, timeout_seconds=99999)
    r = await c.post("/v1/worker/jobs:run", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "completed" and doc["exit_code"] == 0 and doc["truncated"] == {"stdout": False,
                                                                                             "stderr": False}
    assert doc["started_at"].endswith("Z") and doc["version"] == 1
    req = rt.requests[0]
    assert req.env["FOO"] == "bar" and "ollama_base_url" not in req.env
    assert req.env["HOME"] == "/tmp" and req.env["CYNODE_JOB_ID"] == body["job_id"]
    assert req.timeout_s == 10800  # capped at sandbox.timeouts.max_seconds
    assert req.image == "localhost/cynode-sandbox:0.1"


async def test_auth_media_type_and_version(api) -> None:
    c, _ = api
    r = await c.post("/v1/worker/jobs:run", json=job(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await c.post("/v1/worker/jobs:run", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await c.post("/v1/worker/jobs:run", json={**job(), "version": 2})
    assert r.status_code == 400 and r.json()["type"] == "https://cynode.ai/problems/unsupported-payload-version"
    r = await c.post("/v1/worker/jobs:run", json={**job(), "surprise": True})
    assert r.status_code == 400
    r = await c.post("/v1/worker/jobs:run", content=b"x" * (1024 * 1024 + 10),
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(("sandbox", "field"), [
    ({"command": []}, "sandbox.command"),
    ({"command": ["ok", ""]}, "sandbox.command"),
    ({"command": ["a\0b"]}, "sandbox.command"),
    ({"command": ["x" * (257 * 1024)]}, "sandbox.command"),
    ({"image": "has space"}, "sandbox.image"),
    ({"timeout_seconds": 0}, "sandbox.timeout_seconds"),
    ({"network_policy": "open"}, "sandbox.network_policy"),
    ({"env": {"1BAD": "x"}}, "sandbox.env.1BAD"),
    ({"env": {"FOO\n": "x"}}, "sandbox.env.FOO\n"),
    ({"input_files": [{"name": "../x", "content_base64": ""}]}, "sandbox.input_files[0].name"),
    ({"input_files": [{"name": "a\n", "content_base64": ""}]}, "sandbox.input_files[0].name"),
    ({"input_files": [{"name": "a", "content_base64": "!!"}]}, "sandbox.input_files[0].content_base64"),
    ({"input_files": [{"name": "a", "content_base64": ""}, {"name": "a", "content_base64": ""}]},
     "sandbox.input_files[1].name"),
])
async def test_invalid_requests_name_the_field_and_run_nothing(api, sandbox: dict[str, Any], field: str) -> None:
    c, rt = api
    r = await c.post("/v1/worker/jobs:run", json=job(**sandbox))
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == field
    assert rt.requests == []


async def test_ids_must_be_lowercase_uuids(api) -> None:
    c, _ = api
    r = await c.post("/v1/worker/jobs:run", json={**job(), "job_id": str(uuid.uuid4()).upper()})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "job_id"


async def test_image_allowlist_is_a_local_constraint() -> None:
    _r, rt, app = make({"CYNODE_WORKER_SANDBOX_ALLOWED_IMAGES": '["localhost/cynode-*"]'})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = await c.post("/v1/worker/jobs:run", json=job(image="docker.io/evil:latest"))
        assert r.status_code == 400 and r.json()["type"] == "urn:cynodeai:error:local_constraint"
        assert (await c.post("/v1/worker/jobs:run", json=job(image="localhost/cynode-x:1"))).status_code == 200
    assert len(rt.requests) == 1


async def test_refusals_not_ready_disabled_busy_and_duplicate() -> None:
    _r, _rt, app = make(ready="config_not_applied")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = await c.post("/v1/worker/jobs:run", json=job())
        assert r.status_code == 503 and r.headers["retry-after"] == "10"
    _r, _rt, app = make({"CYNODE_WORKER_SANDBOX_MODE": "disabled"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/v1/worker/jobs:run", json=job())).status_code == 403
    runner, _rt, app = make({"CYNODE_WORKER_SANDBOX_MAX_CONCURRENCY": "1"}, runtime=ScriptedRuntime(delay_s=0.3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        first = job()
        slow = asyncio.create_task(c.post("/v1/worker/jobs:run", json=first))
        await asyncio.sleep(0.05)
        dup = await c.post("/v1/worker/jobs:run", json=first)
        busy = await c.post("/v1/worker/jobs:run", json=job())
        assert dup.status_code == 409
        assert busy.status_code == 429 and busy.headers["retry-after"] == "5"
        assert (await slow).status_code == 200
    assert runner.running == 0


async def test_input_files_and_inference_unavailable(api) -> None:
    c, rt = api
    r = await c.post("/v1/worker/jobs:run", json=job(
        input_files=[{"name": "data.txt", "content_base64": base64.b64encode(b"abc").decode()}]))
    assert r.status_code == 200 and rt.requests[-1].input_files == {"data.txt": b"abc"}
    r = await c.post("/v1/worker/jobs:run", json=job(use_inference=True))
    doc = r.json()
    assert r.status_code == 200 and doc["status"] == "failed" and doc["error"]["type"] == "inference_unavailable"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
@example({"FOO\n": "x", "ollama_base_url": "y"})
def test_env_filter_never_passes_reserved_or_invalid_names(env: dict[str, str]) -> None:
    runner, _rt, _app = make()
    req = RunJobRequest(version=1, task_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()),
                        sandbox=SandboxSpec(command=["true"], env=env))
    try:
        _image, _cmd, out, _files = runner.validate(req)
    except Invalid:
        return
    assert all(k.upper() not in {"INFERENCE_PROXY_URL", "OLLAMA_BASE_URL", "CYNODE_JOB_ID"} for k in out)
    assert set(out) <= set(env)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", k) for k in out)  # a valid name, all of it


async def test_an_engine_gone_before_the_job_started_is_a_503_and_a_runtime_check() -> None:
    """Nothing ran, so the orchestrator may requeue the job without an attempt; the node re-checks its engine."""
    from cynode.worker.runtime import EngineUnreachable

    class GoneRuntime(ScriptedRuntime):
        async def run(self, req: Any) -> Any:
            self.requests.append(req)
            raise EngineUnreachable("connection refused")

    lost: list[bool] = []
    s = load_settings(None, {"CYNODE_DATA_DIR": "/tmp/cynode-test"})
    runner = JobRunner(s, GoneRuntime(), ready=lambda: None, runtime_lost=lambda: lost.append(True))
    app = build_app("worker", worker_routes(Manager(), runner, 1024 * 1024), readiness=Readiness())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = await c.post("/v1/worker/jobs:run", json=job())
    assert r.status_code == 503 and r.headers["retry-after"] == "10" and lost == [True]
    assert runner.running == 0  # the slot is free again

"""The shared HTTP layer, exercised through a small app built with the same factory every listener uses."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from litestar import Request, get, post

from cynode.errors import Conflict, FieldError, Invalid
from cynode.http.app import build_app
from cynode.http.body import read_json
from cynode.http.health import PASS, GateResult, Readiness


class Thing(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int = 1


@post("/v1/things", request_max_body_size=64)
async def create_thing(request: Request[Any, Any, Any]) -> dict[str, Any]:
    thing = await read_json(request, Thing)
    if thing.name == "dup":
        raise Conflict("a thing with that name exists")
    if thing.name == "bad":
        raise Invalid("name is bad", [FieldError("name", "bad")])
    return {"name": thing.name, "size": thing.size}


@get("/v1/boom")
async def boom() -> None:
    raise RuntimeError("secret SQL: SELECT password FROM users")


def make_client(gates: list[Any] | None = None, accepting: bool = True) -> httpx.AsyncClient:
    readiness = Readiness(gates or [])
    app = build_app("test", [create_thing, boom], readiness=readiness, accepting=lambda: accepting)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"urn:cynodeai:error:{code}" and body["status"] == status
    assert body["instance"] == r.headers["x-request-id"]
    assert set(body) <= {"type", "title", "status", "detail", "instance", "errors"}
    return body


async def test_success_and_request_id_echo() -> None:
    async with make_client() as c:
        r = await c.post("/v1/things", json={"name": "a"}, headers={"X-Request-Id": "my-req.1"})
        assert r.status_code == 201 and r.json() == {"name": "a", "size": 1}
        assert r.headers["x-request-id"] == "my-req.1"
        r = await c.post("/v1/things", json={"name": "a"}, headers={"X-Request-Id": "bad id!"})
        assert len(r.headers["x-request-id"]) == 26  # replaced by a ULID
        r = await c.post("/v1/things", json={"name": "a"}, headers=[(b"x-request-id", b"id-1\n")])
        assert len(r.headers["x-request-id"]) == 26  # a trailing newline is not part of a valid id


async def test_unknown_field_and_wrong_type_are_400_naming_the_field() -> None:
    async with make_client() as c:
        body = assert_problem(await c.post("/v1/things", json={"name": "a", "colour": "red"}), 400, "validation")
        assert body["errors"] == [{"field": "colour", "message": "unknown field"}]
        body = assert_problem(await c.post("/v1/things", json={"name": "a", "size": "big"}), 400, "validation")
        assert body["errors"][0]["field"] == "size"
        assert_problem(await c.post("/v1/things", content=b"{not json", headers={"content-type": "application/json"}),
                       400, "validation")


async def test_media_type_size_and_paths() -> None:
    async with make_client() as c:
        assert_problem(await c.post("/v1/things", content=b'{"name":"a"}', headers={"content-type": "text/plain"}),
                       415, "unsupported_media_type")
        assert_problem(await c.post("/v1/things", json={"name": "x" * 200}), 413, "payload_too_large")
        assert_problem(await c.get("/v1/things/"), 404, "not_found")
        assert_problem(await c.get("/v1/nope"), 404, "not_found")
        r = await c.get("/v1/things")
        assert_problem(r, 405, "method_not_allowed")
        assert "POST" in r.headers.get("allow", "")


async def test_domain_errors_and_internal_errors_leak_nothing() -> None:
    async with make_client() as c:
        assert_problem(await c.post("/v1/things", json={"name": "dup"}), 409, "conflict")
        body = assert_problem(await c.post("/v1/things", json={"name": "bad"}), 400, "validation")
        assert body["errors"] == [{"field": "name", "message": "bad"}]
        body = assert_problem(await c.get("/v1/boom"), 500, "internal")
        assert "SQL" not in body["detail"] and "password" not in body["detail"]


async def test_oversized_headers_are_431() -> None:
    async with make_client() as c:
        r = await c.get("/v1/boom", headers={"x-big": "a" * (65 * 1024)})
        assert r.status_code == 431


async def test_startup_gate_answers_503_except_health() -> None:
    async with make_client(accepting=False) as c:
        r = await c.post("/v1/things", json={"name": "a"})
        assert_problem(r, 503, "service_unavailable")
        assert r.headers["retry-after"]
        assert (await c.get("/healthz")).text == "ok"


async def test_health_and_readiness_text_and_json() -> None:
    async def ok() -> GateResult:
        return PASS

    async def missing() -> GateResult:
        return GateResult(False, "no_inference_path", "register a worker")

    async def broken() -> GateResult:
        raise RuntimeError("x")

    async with make_client([("database", ok), ("inference_path", missing), ("other", broken)]) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200 and r.text == "ok" and r.headers["content-type"].startswith("text/plain")
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.text == "not ready: no_inference_path: register a worker"
        r = await c.get("/readyz", headers={"Accept": "application/json"})
        doc = r.json()
        assert doc["status"] == "not_ready" and doc["reason_code"] == "no_inference_path"
        assert [ch["ok"] for ch in doc["checks"]] == [True, False, False]
    async with make_client([("database", ok)]) as c:
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.text == "ready"


@pytest.mark.parametrize("path", ["/schema/openapi.json"])
async def test_openapi_is_served(path: str) -> None:
    async with make_client() as c:
        r = await c.get(path)
        assert r.status_code == 200 and "/v1/things" in r.json()["paths"]

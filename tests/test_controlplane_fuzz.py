"""Fuzzing the control plane's node bodies (registration, capability reports, config acks), each a valid one with
fields replaced, removed or added (JSON as any client may send it, lone surrogates included): never a 5xx, every
error is problem+json, and the PSK never echoes back."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.routes import controlplane_route_handlers
from cynode.http.app import build_app
from cynode.http.health import Readiness
from tests.support.nodes import capability
from tests.test_controlplane_nodes import PSK, Services, client, cp_settings, registry  # noqa: F401
from tests.test_gateway_fuzz import encode, json_values, splices

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

BASE = msgspec.to_builtins(capability())
paths = st.sampled_from([
    ("version",), ("reported_at",), ("node",), ("node", "node_slug"), ("node", "labels"), ("platform",),
    ("platform", "os"), ("compute",), ("compute", "cpu_cores"), ("compute", "ram_mb"), ("worker_api",),
    ("worker_api", "base_url"), ("sandbox",), ("sandbox", "supported"), ("inference",), ("inference", "mode"),
    ("inference", "running"), ("inference", "models"), ("gpu",), ("network",), ("extra",),
])
edits = st.lists(st.tuples(paths, st.sampled_from(["set", "drop"]), json_values), max_size=3)


def edited(doc: dict[str, Any], changes: Sequence[tuple[tuple[str, ...], str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for path, op, value in changes:
        parent = doc
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                parent[key] = {}
            parent = parent[key]
        if op == "drop":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return doc


def fresh_client(reg: NodeRegistry) -> httpx.AsyncClient:
    """A new app per example, so registration's per-address rate limit does not end the exploration early."""
    services = Services(reg)
    app = build_app("cp", controlplane_route_handlers(lambda: services), readiness=Readiness())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp")


@FUZZ
@given(changes=edits, psk=st.sampled_from([PSK, "wrong"]) | json_values, splice=splices)
@example(changes=[], psk=PSK, splice=(b"\xff", 0))  # not UTF-8 inside a string: 400, not 500
async def test_fuzz_registration(registry: NodeRegistry, changes: Any, psk: Any,  # noqa: F811
                                 splice: tuple[bytes, int] | None) -> None:
    async with fresh_client(registry) as c:
        body = encode({"psk": psk, "capability": edited(BASE, changes)}, splice)
        r = await c.post("/v1/nodes/register", content=body, headers={"content-type": "application/json"})
    check_node(r)
    assert r.status_code in (200, 201, 400, 401)


@FUZZ
@given(changes=edits, kind=st.sampled_from(["capability", "ack"]), splice=splices)
@example(changes=[], kind="ack", splice=(b"\x80", 0))
async def test_fuzz_reports_and_acks(registry: NodeRegistry, changes: Any, kind: str,  # noqa: F811
                                     splice: tuple[bytes, int] | None) -> None:
    async with fresh_client(registry) as c:
        boot = (await c.post("/v1/nodes/register", json={"psk": PSK, "capability": BASE})).json()
        auth = {"Authorization": f"Bearer {boot['auth']['node_jwt']}"}
        if kind == "capability":
            r = await c.post("/v1/nodes/capability", content=encode(edited(BASE, changes), splice),
                             headers={**auth, "content-type": "application/json"})
        else:
            cfg = (await c.get("/v1/nodes/config", headers=auth)).json()
            ack = {"version": 1, "node_slug": "node-a", "config_version": cfg["config_version"],
                   "ack_at": "2026-11-25T00:00:00Z", "status": "applied"}
            ack_changes = [((p[-1] if p[-1] in ack else "status",), op, v) for p, op, v in changes]
            r = await c.post("/v1/nodes/config", content=encode(edited(ack, ack_changes), splice),
                             headers={**auth, "content-type": "application/json"})
    check_node(r)
    assert r.status_code in (204, 400, 409)


def check_node(r: httpx.Response) -> None:
    assert PSK not in r.text
    if r.status_code < 300:
        return
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == r.status_code and body["type"].startswith("urn:cynodeai:error:")

"""Node registration, config delivery and acks through the real control plane routes and a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from cynode.config import Settings, load_settings
from cynode.controlplane.nodes import NodeRegistry, inference_backend_for, worker_bearer_token
from cynode.controlplane.routes import controlplane_route_handlers
from cynode.db.pool import Database
from cynode.http.app import build_app
from cynode.http.health import Readiness
from tests.support.nodes import capability

PSK = "test-psk-0123456789"
JWT = b"j" * 40
KEY = b"k" * 40


class Services:
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry


@pytest.fixture
def cp_settings(tmp_path, db_url: str) -> Settings:
    return load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url,
                                "CYNODE_NODE_REGISTRATION_PSK": PSK})


@pytest.fixture
async def registry(cp_settings: Settings, database: Database) -> NodeRegistry:
    return NodeRegistry(cp_settings, database, KEY, JWT)


@pytest.fixture
async def client(registry: NodeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    services = Services(registry)
    app = build_app("cp", controlplane_route_handlers(lambda: services), readiness=Readiness())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp") as c:
        yield c


def reg_body(psk: str = PSK, **kw: Any) -> dict[str, Any]:
    return {"psk": psk, "capability": msgspec.to_builtins(capability(**kw))}


async def register(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    r = await client.post("/v1/nodes/register", json=reg_body(**kw))
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_register_then_reregister(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/nodes/register", json=reg_body())
    assert r.status_code == 201
    boot = r.json()
    assert boot["version"] == 1 and boot["auth"]["node_jwt"]
    assert boot["orchestrator"]["endpoints"]["node_config_url"].endswith("/v1/nodes/config")
    r = await client.post("/v1/nodes/register", json=reg_body())
    assert r.status_code == 200


@pytest.mark.parametrize(("body", "status"), [
    (reg_body(psk="wrong"), 401),
    (reg_body(slug="Bad_Slug"), 400),
    (reg_body(slug="config"), 400),
    (reg_body(slug="node-a\n"), 400),  # a regex `$` matches before a trailing newline: validators use fullmatch
    (reg_body(version=2), 400),
    (reg_body(base_url="ftp://x"), 400),
    ({"psk": PSK, "capability": {"version": 1}}, 400),
    ({**reg_body(), "extra": 1}, 400),
])
async def test_registration_refusals(client: httpx.AsyncClient, body: dict[str, Any], status: int) -> None:
    r = await client.post("/v1/nodes/register", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert PSK not in r.text


async def test_no_psk_configured_fails_closed(tmp_path, database: Database, db_url: str) -> None:
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url})
    services = Services(NodeRegistry(s, database, KEY, JWT))
    app = build_app("cp", controlplane_route_handlers(lambda: services), readiness=Readiness())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp") as c:
        r = await c.post("/v1/nodes/register", json=reg_body())
    assert r.status_code == 503 and r.headers.get("retry-after")


async def test_registration_rate_limit(client: httpx.AsyncClient) -> None:
    statuses = [(await client.post("/v1/nodes/register", json=reg_body(psk="x"))).status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


async def test_config_fetch_ack_and_bearer(client: httpx.AsyncClient, database: Database) -> None:
    boot = await register(client)
    auth = {"Authorization": f"Bearer {boot['auth']['node_jwt']}"}
    assert (await client.get("/v1/nodes/config")).status_code == 401
    cfg = (await client.get("/v1/nodes/config", headers=auth)).json()
    assert len(cfg["config_version"]) == 26 and cfg["node_slug"] == "node-a"
    assert cfg["inference_backend"]["enabled"] is True
    async with database.connection() as conn:
        node_id = str((await (await conn.execute("SELECT id FROM nodes")).fetchone())["id"])
    assert cfg["worker_api"]["orchestrator_bearer_token"] == worker_bearer_token(KEY, node_id, cfg["config_version"])

    ack = {"version": 1, "node_slug": "node-a", "config_version": cfg["config_version"],
           "ack_at": "2026-11-25T00:00:00Z", "status": "applied"}
    assert (await client.post("/v1/nodes/config", json={**ack, "config_version": "0" * 26},
                               headers=auth)).status_code == 409
    assert (await client.post("/v1/nodes/config", json={**ack, "node_slug": "other"}, headers=auth)).status_code == 400
    assert (await client.post("/v1/nodes/config", json={**ack, "status": "maybe"}, headers=auth)).status_code == 400
    assert (await client.post("/v1/nodes/config", json={**ack, "ack_at": "yesterday"}, headers=auth)).status_code == 400
    assert (await client.post("/v1/nodes/config", json=ack, headers=auth)).status_code == 204
    async with database.connection() as conn:
        row = await (await conn.execute("SELECT config_version, config_ack_status FROM nodes")).fetchone()
    assert row == {"config_version": cfg["config_version"], "config_ack_status": "applied"}


async def test_capability_change_issues_a_new_config(client: httpx.AsyncClient) -> None:
    boot = await register(client)
    auth = {"Authorization": f"Bearer {boot['auth']['node_jwt']}"}
    v1 = (await client.get("/v1/nodes/config", headers=auth)).json()["config_version"]
    same = msgspec.to_builtins(capability())
    assert (await client.post("/v1/nodes/capability", json=same, headers=auth)).status_code == 204
    assert (await client.get("/v1/nodes/config", headers=auth)).json()["config_version"] == v1
    changed = msgspec.to_builtins(capability(inference=False))
    assert (await client.post("/v1/nodes/capability", json=changed, headers=auth)).status_code == 204
    cfg = (await client.get("/v1/nodes/config", headers=auth)).json()
    assert cfg["config_version"] > v1 and "inference_backend" not in cfg
    wrong = msgspec.to_builtins(capability(slug="node-b"))
    assert (await client.post("/v1/nodes/capability", json=wrong, headers=auth)).status_code == 400


async def test_user_shaped_token_is_refused(client: httpx.AsyncClient) -> None:
    from cynode.auth.tokens import encode_jwt

    await register(client)
    token, _ = encode_jwt({"sub": "x"}, JWT, 60, "access")
    r = await client.get("/v1/nodes/config", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_disabled_node_gets_403(client: httpx.AsyncClient, database: Database) -> None:
    boot = await register(client)
    async with database.connection() as conn:
        await conn.execute("UPDATE nodes SET status = 'inactive'")
    r = await client.get("/v1/nodes/config", headers={"Authorization": f"Bearer {boot['auth']['node_jwt']}"})
    assert r.status_code == 403


@pytest.mark.parametrize(("report", "expected"), [
    ({"inference": {"existing_service": True}}, {"enabled": False}),
    ({"inference": {"supported": True, "mode": "disabled"}}, None),
    ({"inference": {"supported": False}}, None),
    ({"inference": {}}, None),
    ({"inference": {"supported": True}, "node": {"labels": ["sandbox_only"]}}, None),
    ({"inference": {"supported": True}}, {"enabled": True, "variant": "cpu", "port": 11434}),
    ({"inference": {"supported": True}, "gpu": {"devices": [{"vendor": "NVIDIA"}]}},
     {"enabled": True, "variant": "cuda", "port": 11434}),
    ({"inference": {"supported": True}, "gpu": {"devices": [{"features": {"rocm_version": "6"}}]}},
     {"enabled": True, "variant": "rocm", "port": 11434}),
])
def test_inference_backend_decision(report: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert inference_backend_for(report, None) == expected


def test_selected_model_rides_along() -> None:
    assert inference_backend_for({"inference": {"supported": True}}, "gemma3:270m")["selected_model"] == "gemma3:270m"

"""Node administration on the gateway (admin only): list, get, drain, disable, enable, refresh-config."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cynode.config import Settings
from cynode.contracts.node import ConfigAck
from cynode.controlplane.wiring import start_controlplane
from cynode.db.pool import Database
from cynode.http.pagination import encode_cursor
from tests.support.nodes import capability
from tests.test_gateway_harness import ADMIN_PASSWORD, Gateway, open_gateway


@pytest.fixture
async def gateway(settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    gw = await open_gateway(settings, database)
    gw.orch.secret_key = b"s" * 48
    gw.orch.controlplane = await start_controlplane(gw.orch)
    try:
        yield gw
    finally:
        await gw.orch.controlplane.stop()
        await gw.client.aclose()
        await gw.services.stop()


async def register(gw: Gateway, slug: str) -> str:
    registry = gw.orch.controlplane.registry
    node, _ = await registry.register(capability(slug, inference=False))  # no PM model pushed into its config
    cfg = await registry.get_config(node.node_id)
    await registry.ack(node.node_id, slug, ConfigAck(version=1, node_slug=slug, config_version=cfg.config_version,
                                                     ack_at="2026-11-25T00:00:00Z", status="applied"))
    return node.node_id


async def test_admin_lists_and_changes_node_state(gateway: Gateway) -> None:
    node_id = await register(gateway, "node-a")
    await register(gateway, "node-b")
    admin = await gateway.token()
    r = await gateway.client.get("/v1/nodes?limit=1", headers=admin)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [n["node_slug"] for n in page["nodes"]] == ["node-b"] and page["next_cursor"]
    r = await gateway.client.get(f"/v1/nodes?limit=1&cursor={page['next_cursor']}", headers=admin)
    assert [n["node_slug"] for n in r.json()["nodes"]] == ["node-a"] and "next_cursor" not in r.json()

    node = (await gateway.client.get("/v1/nodes/node-a", headers=admin)).json()
    assert node["node_id"] == node_id and node["dispatchable"] is True and node["enabled"] is True
    assert node["capability_summary"]["sandbox"] is True

    drained = (await gateway.client.post(f"/v1/nodes/{node_id}/drain", headers=admin)).json()
    assert drained["status"] == "drained" and drained["dispatchable"] is False and drained["enabled"] is True
    disabled = (await gateway.client.post("/v1/nodes/node-a/disable", headers=admin)).json()
    assert disabled["status"] == "inactive" and disabled["enabled"] is False
    enabled = (await gateway.client.post("/v1/nodes/node-a/enable", headers=admin)).json()
    assert enabled["status"] == "active" and enabled["dispatchable"] is True

    before = node["config_version"]
    refreshed = (await gateway.client.post("/v1/nodes/node-a/refresh-config", headers=admin)).json()
    assert refreshed["dispatchable"] is False  # a new version is issued and not acked yet
    cfg = await gateway.orch.controlplane.registry.get_config(node_id)
    assert cfg.config_version > before


async def test_nodes_are_admin_only_and_unknown_is_404(gateway: Gateway) -> None:
    member = await gateway.user("plain-user")
    assert (await gateway.client.get("/v1/nodes", headers=member)).status_code == 403
    assert (await gateway.client.post("/v1/nodes/x/drain", headers=member)).status_code == 403
    assert (await gateway.client.get("/v1/nodes")).status_code == 401
    admin = await gateway.token()
    r = await gateway.client.get("/v1/nodes/nope", headers=admin)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await gateway.client.get("/v1/nodes?cursor=%%%", headers=admin)).status_code == 400
    # A cursor with a timestamp but no zone is not one the server wrote: refused like the others, not guessed at.
    naive = encode_cursor(["2026-11-25T10:00:00", "00000000-0000-0000-0000-000000000001"])
    r = await gateway.client.get(f"/v1/nodes?cursor={naive}", headers=admin)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor"

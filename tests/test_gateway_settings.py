"""System settings (orchestrator.md §11): admin only, versioned with optimistic concurrency, validated, audited."""

from __future__ import annotations

from tests.test_auth_api import assert_problem
from tests.test_gateway_harness import Gateway, gateway_fixture  # noqa: F401

PM_MODE = "agents.project_manager.model.selection.execution_mode"


async def test_create_update_read_list_delete_with_versions(gateway: Gateway) -> None:
    h = await gateway.token()
    c = gateway.client
    changed: list[str] = []
    gateway.services.system_settings.subscribe(changed.append)
    r = await c.put(f"/v1/settings/{PM_MODE}", json={"value": "force_local", "reason": "no GPU"}, headers=h)
    assert r.status_code == 200 and r.json() == {"key": PM_MODE, "version": 1}
    r = await c.put(f"/v1/settings/{PM_MODE}", json={"value": "auto", "expected_version": 1}, headers=h)
    assert r.json()["version"] == 2
    assert_problem(await c.put(f"/v1/settings/{PM_MODE}", json={"value": "auto", "expected_version": 1}, headers=h),
                   409, "conflict")
    got = (await c.get(f"/v1/settings/{PM_MODE}", headers=h)).json()
    assert got["value"] == "auto" and got["value_type"] == "string" and got["version"] == 2
    assert got["updated_by"] == "admin" and got["updated_at"].endswith("Z")
    for k, v in (("ui.theme", "dark"), ("ui.page_size", 25), ("ui.flags", {"a": True}), ("zeta", [1, 2])):
        assert (await c.put(f"/v1/settings/{k}", json={"value": v}, headers=h)).status_code == 200
    page = (await c.get("/v1/settings", params={"prefix": "ui.", "limit": "2"}, headers=h)).json()
    assert [s["key"] for s in page["settings"]] == ["ui.flags", "ui.page_size"]
    rest = (await c.get("/v1/settings", params={"prefix": "ui.", "cursor": page["next_cursor"]}, headers=h)).json()
    assert [s["key"] for s in rest["settings"]] == ["ui.theme"] and "next_cursor" not in rest
    assert {s["value_type"] for s in page["settings"]} == {"object", "number"}
    assert_problem(await c.delete(f"/v1/settings/{PM_MODE}", params={"expected_version": "1"}, headers=h), 409,
                   "conflict")
    r = await c.delete(f"/v1/settings/{PM_MODE}", params={"expected_version": "2"}, headers=h)
    assert r.status_code == 200 and r.json() == {"key": PM_MODE, "deleted": True}
    assert_problem(await c.get(f"/v1/settings/{PM_MODE}", headers=h), 404, "not_found")
    assert_problem(await c.delete(f"/v1/settings/{PM_MODE}", headers=h), 404, "not_found")
    audit = await gateway.rows("SELECT old_value, new_value, changed_by, reason FROM system_settings_audit_log "
                               "WHERE key = %s ORDER BY changed_at", PM_MODE)
    assert [(a["old_value"], a["new_value"]) for a in audit] == [(None, "force_local"), ("force_local", "auto"),
                                                                 ("auto", None)]
    assert audit[0]["reason"] == "no GPU" and audit[0]["changed_by"] == "admin"
    assert changed.count(PM_MODE) == 3


async def test_settings_validation(gateway: Gateway) -> None:
    h = await gateway.token()
    c = gateway.client
    cases = [
        (PM_MODE, {"value": "sometimes"}),  # bad enum for a known PM key
        ("agents.project_manager.model.selection.prefer_orchestrator_host", {"value": "yes"}),
        ("x", {"value": 5, "value_type": "string"}),  # type mismatch
        ("x", {"value": None}),
        ("x", {"value": "a", "value_type": "blob"}),
        ("github.token", {"value": "ghp_x"}),  # secret-like keys never go into settings
        ("db.password", {"value": "x"}),
        ("x", {"value": "y" * (64 * 1024 + 1)}),
        ("x", {"value": 1, "extra": True}),
    ]
    for key, body in cases:
        assert_problem(await c.put(f"/v1/settings/{key}", json=body, headers=h), 400, "validation")
    assert await gateway.rows("SELECT 1 FROM system_settings") == []
    assert_problem(await c.get("/v1/settings", params={"cursor": "%%%"}, headers=h), 400, "validation")


async def test_settings_are_admin_only(gateway: Gateway) -> None:
    member = await gateway.user("mia", "mia-password")
    c = gateway.client
    assert_problem(await c.get("/v1/settings", headers=member), 403, "authorization")
    assert_problem(await c.put("/v1/settings/a", json={"value": 1}, headers=member), 403, "authorization")
    assert_problem(await c.get("/v1/settings/a", headers=member), 403, "authorization")
    assert_problem(await c.delete("/v1/settings/a", headers=member), 403, "authorization")
    assert_problem(await c.get("/v1/settings"), 401, "authentication")
    await gateway.flush_audit()
    rows = await gateway.rows("SELECT action, decision FROM gateway_audit_log WHERE resource_type = 'settings'")
    assert len(rows) == 5 and all(r["decision"] == "deny" for r in rows)

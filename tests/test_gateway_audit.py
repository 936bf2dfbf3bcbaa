"""The gateway audit trail (orchestrator.md §12): one row per authenticated request and per denial, nothing secret in
it, never lost (retried, flushed at stop), and a failed audit write fails only auth events."""

from __future__ import annotations

import logging
from typing import Any

from tests.test_auth_api import assert_problem
from tests.test_gateway_harness import ADMIN_PASSWORD, Gateway, gateway_fixture  # noqa: F401

BLOCK = "ALTER TABLE {} ADD CONSTRAINT audit_blocked CHECK (false) NOT VALID"
UNBLOCK = "ALTER TABLE {} DROP CONSTRAINT audit_blocked"


async def sql(gw: Gateway, statement: str) -> None:
    async with gw.db.connection() as conn:
        await conn.execute(statement)  # type: ignore[arg-type]


async def test_one_row_per_request_with_who_what_and_outcome(gateway: Gateway) -> None:
    tokens = await gateway.login()
    h = {"Authorization": "Bearer " + tokens["access_token"]}
    c = gateway.client
    t = (await c.post("/v1/tasks", json={"prompt": "very secret prompt text"}, headers=h)).json()
    await c.get("/v1/tasks", headers=h)
    await c.get(f"/v1/tasks/{t['id']}", headers=h, params={"x": "1"})
    await c.get(f"/v1/tasks/{t['id']}/result", headers=h)
    await c.get("/v1/tasks/nope-nope", headers=h)
    await c.get("/v1/users/me", headers=h)
    await gateway.flush_audit()
    rows = await gateway.rows("SELECT * FROM gateway_audit_log ORDER BY created_at, id")
    got = [(r["action"], r["resource_type"], r["decision"], r["status_code"], r["method"], r["route"]) for r in rows]
    assert got == [
        ("create", "task", "allow", 201, "POST", "/v1/tasks"),
        ("list", "task", "allow", 200, "GET", "/v1/tasks"),
        ("read", "task", "allow", 200, "GET", "/v1/tasks/{ref}"),
        ("result.read", "task", "allow", 200, "GET", "/v1/tasks/{ref}/result"),
        ("read", "task", "allow", 404, "GET", "/v1/tasks/{ref}"),
        ("read_me", "user", "allow", 200, "GET", "/v1/users/me"),
    ]
    admin_id = (await gateway.rows("SELECT id::text FROM users WHERE handle = 'admin'"))[0]["id"]
    for r in rows:
        assert str(r["user_id"]) == admin_id and r["subject_type"] == "user" and r["roles"] == ["admin"]
        assert r["group_ids"] == [] and r["duration_ms"] is not None and r["request_id"]
    assert str(rows[2]["task_id"]) == t["id"] and rows[2]["scope_type"] == "project"
    dump = repr(rows)
    assert "very secret prompt text" not in dump and tokens["access_token"] not in dump


async def test_rows_queued_at_shutdown_are_written(gateway: Gateway) -> None:
    h = await gateway.token()
    for _ in range(25):
        await gateway.client.get("/v1/users/me", headers=h)
    await gateway.services.audit.stop()  # what GatewayServices.stop() does at shutdown
    assert len(await gateway.rows("SELECT 1 FROM gateway_audit_log WHERE action = 'read_me'")) == 25


async def test_a_failing_audit_write_does_not_fail_the_request_and_is_retried(gateway: Gateway, caplog: Any) -> None:
    h = await gateway.token()
    await sql(gateway, BLOCK.format("gateway_audit_log"))
    with caplog.at_level(logging.ERROR, logger="cynode.gateway.audit"):
        r = await gateway.client.post("/v1/tasks", json={"prompt": "still works"}, headers=h)
        assert r.status_code == 201
        assert (await gateway.client.get("/v1/users/me", headers=h)).status_code == 200
        assert not await gateway.services.audit.flush()
    assert "gateway audit" in caplog.text
    assert len(await gateway.rows("SELECT 1 FROM tasks")) == 1  # the task was committed
    assert gateway.services.audit.pending == 2
    await sql(gateway, UNBLOCK.format("gateway_audit_log"))
    await gateway.flush_audit()
    rows = await gateway.rows("SELECT action FROM gateway_audit_log ORDER BY created_at")
    assert [r["action"] for r in rows] == ["create", "read_me"]  # nothing was lost


async def test_a_failing_auth_audit_write_makes_login_fail(gateway: Gateway) -> None:
    await sql(gateway, BLOCK.format("auth_audit_log"))
    r = await gateway.client.post("/v1/auth/login", json={"handle": "admin", "password": ADMIN_PASSWORD})
    body = assert_problem(r, 500, "internal")
    assert body["detail"] == "internal error"
    assert await gateway.rows("SELECT 1 FROM refresh_sessions") == []  # no session without its audit row


async def test_a_nul_in_a_path_id_is_audited_and_does_not_stall_the_trail(gateway: Gateway) -> None:
    h = await gateway.token()
    r = await gateway.client.delete("/v1/auth/tokens/%00abc", headers=h)  # any user may ask; the id is their text
    assert r.status_code == 404
    assert (await gateway.client.get("/v1/users/me", headers=h)).status_code == 200
    await gateway.flush_audit()  # a row PostgreSQL refused would keep the whole batch (and all later ones) queued
    rows = await gateway.rows("SELECT action, resource_id FROM gateway_audit_log WHERE action IN ('revoke', 'read_me') "
                              "ORDER BY created_at")
    assert [r["action"] for r in rows] == ["revoke", "read_me"] and rows[0]["resource_id"] == "abc"


async def test_a_row_the_database_refuses_is_dropped_loudly_and_the_rest_are_written(gateway: Gateway,
                                                                                      caplog: Any) -> None:
    from cynode.gateway.audit import AuditRecord

    writer = gateway.services.audit
    good = [AuditRecord(request_id=f"r{i}", method="GET", route="/x", action="probe", resource_type="test")
            for i in range(3)]
    bad = AuditRecord(request_id="poison", method="GET", route="/x\x00", action="probe", resource_type="test")
    for rec in (good[0], bad, *good[1:]):
        writer.submit(rec)
    with caplog.at_level(logging.ERROR, logger="cynode.db.batch"):
        assert await writer.flush() and writer.pending == 0
    assert "row refused by the database; dropped" in caplog.text
    rows = await gateway.rows("SELECT request_id FROM gateway_audit_log WHERE action = 'probe' ORDER BY request_id")
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"]

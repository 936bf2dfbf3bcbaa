"""The admin user endpoints and role resolution (orchestrator.md §3, §4), through the real gateway app."""

from __future__ import annotations

from tests.test_auth_api import assert_problem, audit_events
from tests.test_gateway_harness import Gateway, gateway_fixture  # noqa: F401


async def user_id(gw: Gateway, handle: str) -> str:
    return str((await gw.rows("SELECT id::text FROM users WHERE handle = %s", handle))[0]["id"])


async def test_create_user_defaults_to_member_with_a_default_project(gateway: Gateway) -> None:
    h = await gateway.token()
    r = await gateway.client.post("/v1/users", json={"handle": "alice", "password": "alice-password",
                                                     "email": "alice@example.com"}, headers=h)
    assert r.status_code == 201
    body = r.json()
    assert body["handle"] == "alice" and body["roles"] == ["member"] and body["is_active"] is True
    assert body["email"] == "alice@example.com" and body["created_at"].endswith("Z") and "password" not in body
    projects = await gateway.rows("SELECT slug, display_name FROM projects WHERE slug = %s", f"default-{body['id']}")
    assert projects == [{"slug": f"default-{body['id']}", "display_name": "alice (default)"}]
    me = await gateway.client.get("/v1/users/me", headers=await gateway.token("alice", "alice-password"))
    assert me.json()["id"] == body["id"] and me.json()["roles"] == ["member"]
    assert ("user_created", True, None) in await audit_events(gateway)


async def test_create_user_validation_and_conflicts(gateway: Gateway) -> None:
    h = await gateway.token()
    c = gateway.client
    for bad in ({"handle": "Bad Handle", "password": "password-1"}, {"handle": "system", "password": "password-1"},
                {"handle": "ok", "password": "short"}, {"handle": "ok", "password": "p" * 257},
                {"handle": "ok", "password": "password-1", "roles": ["wizard"]},
                {"handle": "ok", "password": "password-1", "email": "not-an-email"},
                {"handle": "ok", "password": "password-1", "colour": "red"}):
        assert_problem(await c.post("/v1/users", json=bad, headers=h), 400, "validation")
    assert await gateway.rows("SELECT 1 FROM users WHERE handle = 'ok'") == []  # nothing written by a rejection
    ok = {"handle": "gina", "password": "gina-password", "email": "g@example.com"}
    assert (await c.post("/v1/users", json=ok, headers=h)).status_code == 201
    assert_problem(await c.post("/v1/users", json=ok, headers=h), 409, "conflict")
    dup_email = {"handle": "gina2", "password": "gina-password", "email": "g@example.com"}
    assert "email" in assert_problem(await c.post("/v1/users", json=dup_email, headers=h), 409, "conflict")["detail"]


async def test_admin_endpoints_need_a_system_admin_binding(gateway: Gateway) -> None:
    member = await gateway.user("henry", "henry-password")
    target = await user_id(gateway, "henry")
    c = gateway.client
    assert_problem(await c.post("/v1/users", json={"handle": "x1", "password": "password-1"}, headers=member),
                   403, "authorization")
    for action in ("disable", "enable", "revoke_sessions"):
        assert_problem(await c.post(f"/v1/users/{target}/{action}", headers=member), 403, "authorization")
    assert_problem(await c.post(f"/v1/users/{target}/reset_password", json={"password": "new-password"},
                                headers=member), 403, "authorization")
    await gateway.flush_audit()
    denials = await gateway.rows("SELECT action, decision, status_code, roles FROM gateway_audit_log "
                                 "WHERE decision = 'deny' ORDER BY created_at")
    assert [d["action"] for d in denials] == ["create", "disable", "enable", "revoke_sessions", "reset_password"]
    assert all(d["status_code"] == 403 and d["roles"] == ["member"] for d in denials)


async def test_admin_is_the_binding_not_the_handle(gateway: Gateway) -> None:
    h = await gateway.token()
    async with gateway.db.connection() as conn:  # the admin loses its binding; its handle stays "admin"
        await conn.execute("UPDATE role_bindings SET is_active = false WHERE scope_type = 'system'")
    r = await gateway.client.post("/v1/users", json={"handle": "x2", "password": "password-1"}, headers=h)
    assert_problem(r, 403, "authorization")


async def test_roles_through_an_active_group(gateway: Gateway) -> None:
    member = await gateway.user("ivy", "ivy-password")
    uid = await user_id(gateway, "ivy")
    async with gateway.db.connection() as conn:
        cur = await conn.execute("INSERT INTO groups (slug, display_name) VALUES ('ops', 'Ops') RETURNING id")
        gid = (await cur.fetchone())["id"]
        await conn.execute("INSERT INTO group_memberships (group_id, user_id) VALUES (%s, %s)", (gid, uid))
        await conn.execute("INSERT INTO role_bindings (subject_type, subject_id, role_id, scope_type) "
                           "SELECT 'group', %s, id, 'system' FROM roles WHERE name = 'admin'", (gid,))
    me = (await gateway.client.get("/v1/users/me", headers=member)).json()
    assert me["roles"] == ["admin", "member"]
    assert (await gateway.client.post("/v1/users", json={"handle": "x3", "password": "password-1"},
                                      headers=member)).status_code == 201
    async with gateway.db.connection() as conn:  # an inactive group grants nothing, checked on the next request
        await conn.execute("UPDATE groups SET is_active = false WHERE id = %s", (gid,))
    assert_problem(await gateway.client.post("/v1/users", json={"handle": "x4", "password": "password-1"},
                                             headers=member), 403, "authorization")


async def test_disable_enable_and_their_conflicts(gateway: Gateway) -> None:
    h = await gateway.token()
    user_h = await gateway.user("jack", "jack-password", admin_headers=h)
    jack, admin, system = [await user_id(gateway, n) for n in ("jack", "admin", "system")]
    c = gateway.client
    r = await c.post(f"/v1/users/{jack}/disable", headers=h)
    assert r.status_code == 200 and r.json() == {"id": jack, "is_active": False}
    assert_problem(await c.get("/v1/users/me", headers=user_h), 401, "authentication")  # sessions revoked at once
    assert_problem(await c.post("/v1/auth/login", json={"handle": "jack", "password": "jack-password"}), 401,
                   "authentication")
    r = await c.post(f"/v1/users/{jack}/enable", headers=h)
    assert r.status_code == 200 and r.json() == {"id": jack, "is_active": True}
    await gateway.login("jack", "jack-password")
    assert_problem(await c.post(f"/v1/users/{admin}/disable", headers=h), 409, "conflict")  # self
    assert_problem(await c.post(f"/v1/users/{system}/disable", headers=h), 409, "conflict")
    assert_problem(await c.post(f"/v1/users/{system}/enable", headers=h), 409, "conflict")
    assert_problem(await c.post("/v1/users/not-a-uuid/disable", headers=h), 400, "validation")
    assert_problem(await c.post("/v1/users/00000000-0000-0000-0000-000000000000/enable", headers=h), 404,
                   "not_found")
    events = [e[0] for e in await audit_events(gateway)]
    assert "user_disabled" in events and "user_reenabled" in events
    assert (await gateway.rows("SELECT count(*) AS n FROM users"))[0]["n"] == 3  # never deleted


async def test_revoke_sessions_and_reset_password(gateway: Gateway) -> None:
    h = await gateway.token()
    k1 = await gateway.user("kate", "kate-password", admin_headers=h)
    kate, system = await user_id(gateway, "kate"), await user_id(gateway, "system")
    c = gateway.client
    assert (await c.post(f"/v1/users/{kate}/revoke_sessions", headers=h)).status_code == 204
    assert (await c.get("/v1/users/me", headers=k1)).status_code == 401
    k2 = await gateway.token("kate", "kate-password")
    assert_problem(await c.post(f"/v1/users/{kate}/reset_password", json={"password": "short"}, headers=h), 400,
                   "validation")
    assert (await c.post(f"/v1/users/{kate}/reset_password", json={"password": "brand-new-pw"},
                         headers=h)).status_code == 204
    assert (await c.get("/v1/users/me", headers=k2)).status_code == 401
    assert (await c.post("/v1/auth/login", json={"handle": "kate", "password": "kate-password"})).status_code == 401
    await gateway.login("kate", "brand-new-pw")
    assert_problem(await c.post(f"/v1/users/{system}/reset_password", json={"password": "whatever-pw"},
                                headers=h), 409, "conflict")
    assert_problem(await c.post("/v1/users/00000000-0000-0000-0000-000000000000/revoke_sessions", headers=h),
                   404, "not_found")
    events = [e[0] for e in await audit_events(gateway)]
    assert "session_revoked" in events and "password_reset" in events


async def test_stale_hash_parameters_are_upgraded_at_login(gateway: Gateway) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("lena-password")
    await gateway.user("lena", "lena-password")
    uid = await user_id(gateway, "lena")
    async with gateway.db.connection() as conn:
        await conn.execute("UPDATE password_credentials SET password_hash = %s WHERE user_id = %s",
                           (weak.encode(), uid))
    await gateway.login("lena", "lena-password")
    row = (await gateway.rows("SELECT password_hash, hash_alg FROM password_credentials WHERE user_id = %s", uid))[0]
    phc = bytes(row["password_hash"]).decode()
    assert phc.startswith("$argon2id$v=19$m=65536,t=3,p=2$") and row["hash_alg"] == "argon2id"
    await gateway.login("lena", "lena-password")


async def test_a_too_short_admin_password_stops_startup(settings, database, monkeypatch) -> None:
    import pytest

    from cynode.errors import ConfigError
    from tests.test_gateway_harness import open_gateway

    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", "short")
    with pytest.raises(ConfigError, match="CYNODE_ADMIN_PASSWORD"):
        await open_gateway(settings, database)
    assert await _count_users(database) == 1  # only `system`; no admin with a weak password


async def _count_users(database) -> int:
    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM users")
        return int((await cur.fetchone())["n"])

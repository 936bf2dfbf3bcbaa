"""The gateway app as production builds it (the Orchestrator's gateway listener and `start_gateway`) over a fresh
migrated database, driven through httpx's ASGI transport; plus the startup seeds it relies on.

Other gateway test modules import the `gateway` fixture from here (as `gateway_fixture`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cynode.config import Settings
from cynode.db.pool import Database
from cynode.gateway.services import GatewayServices
from cynode.gateway.wiring import start_gateway
from cynode.orchestrator import Orchestrator

ADMIN_PASSWORD = "admin-password-for-tests"
JWT_SECRET = b"j" * 48


@dataclass
class Gateway:
    orch: Orchestrator
    client: httpx.AsyncClient

    @property
    def services(self) -> GatewayServices:
        gw: GatewayServices = self.orch.gateway
        return gw

    @property
    def db(self) -> Database:
        assert self.orch.db is not None
        return self.orch.db

    async def login(self, handle: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
        r = await self.client.post("/v1/auth/login", json={"handle": handle, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    async def token(self, handle: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
        return {"Authorization": "Bearer " + (await self.login(handle, password))["access_token"]}

    async def user(self, handle: str, password: str = "user-password-1", roles: list[str] | None = None,
                   admin_headers: dict[str, str] | None = None) -> dict[str, str]:
        """Create a user as the admin and return that user's auth headers."""
        admin_headers = admin_headers or await self.token()
        body: dict[str, Any] = {"handle": handle, "password": password}
        if roles is not None:
            body["roles"] = roles
        r = await self.client.post("/v1/users", json=body, headers=admin_headers)
        assert r.status_code == 201, r.text
        return await self.token(handle, password)

    async def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def flush_audit(self) -> None:
        assert await self.services.audit.flush()


async def open_gateway(settings: Settings, database: Database) -> Gateway:
    orch = Orchestrator(settings)
    orch.db = database
    orch.jwt_secret = JWT_SECRET
    orch.gateway = await start_gateway(orch)
    orch.accepting = True
    transport = httpx.ASGITransport(app=orch.gateway_app)
    return Gateway(orch, httpx.AsyncClient(transport=transport, base_url="http://gateway"))


@pytest.fixture(name="gateway")
async def gateway_fixture(settings: Settings, database: Database,
                          monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    gw = await open_gateway(settings, database)
    try:
        yield gw
    finally:
        await gw.client.aclose()
        await gw.services.stop()


# -- startup seeds ---------------------------------------------------------------------------------------------------

async def test_startup_seeds_system_user_and_admin_with_default_projects(gateway: Gateway) -> None:
    users = {r["handle"]: r for r in await gateway.rows("SELECT id, handle, is_active FROM users")}
    assert set(users) == {"system", "admin"}
    assert users["system"]["is_active"] is False and users["admin"]["is_active"] is True
    creds = await gateway.rows("SELECT u.handle FROM password_credentials c JOIN users u ON u.id = c.user_id")
    assert [c["handle"] for c in creds] == ["admin"]  # system has no credential, so it can never log in
    projects = await gateway.rows(
        "SELECT p.slug, b.subject_id FROM projects p JOIN role_bindings b ON b.scope_id = p.id "
        "JOIN roles r ON r.id = b.role_id WHERE r.name = 'owner' AND b.scope_type = 'project'")
    assert {p["slug"] for p in projects} == {f"default-{u['id']}" for u in users.values()}
    admin_roles = await gateway.rows(
        "SELECT r.name FROM role_bindings b JOIN roles r ON r.id = b.role_id "
        "WHERE b.subject_id = %s AND b.scope_type = 'system'", users["admin"]["id"])
    assert [r["name"] for r in admin_roles] == ["admin"]


async def test_startup_is_idempotent(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", "a-different-password")
    again = await start_gateway(gateway.orch)  # a restart: nothing new, the admin password is not changed
    await again.stop()
    assert len(await gateway.rows("SELECT 1 FROM users")) == 2
    assert len(await gateway.rows("SELECT 1 FROM projects")) == 2
    await gateway.login("admin", ADMIN_PASSWORD)


async def test_generated_admin_password_is_printed_once_and_works(
        settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("CYNODE_ADMIN_PASSWORD", raising=False)
    gw = await open_gateway(settings, database)
    try:
        err = capsys.readouterr().err
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        password = lines[lines.index(next(ln for ln in lines if "generated password" in ln)) + 1]
        assert len(password) == 24 and password.isalnum()
        assert password not in caplog.text  # never in the logs
        assert (await gw.client.post("/v1/auth/login", json={"handle": "admin", "password": password})).status_code \
            == 200
        again = await start_gateway(gw.orch)
        await again.stop()
        assert "generated password" not in capsys.readouterr().err
    finally:
        await gw.client.aclose()
        await gw.services.stop()

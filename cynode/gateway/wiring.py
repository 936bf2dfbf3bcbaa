"""Builds the gateway's services and routes for the orchestrator (called from cynode.orchestrator).

Routes are built with the app, before the database is open, so handlers reach the services lazily: the guard puts
`orch.gateway` (set by `start_gateway` once migrations ran) into each request's scope. `start_gateway` seeds the
reserved `system` user and the initial admin, and starts the audit writer; `GatewayServices.stop()` flushes it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import psycopg
from litestar import Request, Response, Router
from litestar.middleware import DefineMiddleware

from cynode.auth.limits import RateLimiter
from cynode.auth.passwords import Passwords
from cynode.auth.service import AuthService
from cynode.auth.users import UserService
from cynode.gateway.artifacts import ArtifactStore
from cynode.gateway.audit import AuditWriter
from cynode.gateway.chat.audit import ChatAuditWriter
from cynode.gateway.chat.routes import openai_router, thread_routes
from cynode.gateway.chat.service import ChatLinks, ChatService
from cynode.gateway.chat.threads import ThreadService
from cynode.gateway.guard import ClientIp, GatewayGuard
from cynode.gateway.routes_auth import auth_routes, user_routes
from cynode.gateway.routes_nodes import node_routes
from cynode.gateway.routes_tasks import task_routes
from cynode.gateway.services import GatewayServices
from cynode.gateway.settings_api import SettingsService, settings_routes
from cynode.gateway.tasks.service import TaskService
from cynode.http.problems import problem, request_id_of

log = logging.getLogger("cynode.gateway")

__all__ = ["GatewayServices", "gateway_routes", "start_gateway"]


def _data_error(request: Request[Any, Any, Any], exc: psycopg.DataError) -> Response[bytes]:
    """A value the database refuses (out of range, bad encoding) that validation let through: the client's 400,
    never a 500. Logged, since it means a validation rule is missing."""
    log.warning("database refused an input value", extra={"request_id": request_id_of(request),
                                                          "error": type(exc).__name__})
    return problem(400, "a value in the request is not acceptable", request_id=request_id_of(request))


def gateway_routes(orch: Any) -> list[Any]:
    """Every gateway API route, behind the guard (authentication, authorization, rate limit, deadline, audit)."""

    def services() -> GatewayServices | None:
        gw: GatewayServices | None = orch.gateway
        return gw

    s = orch.settings
    router = Router(
        path="/",
        route_handlers=[*auth_routes(s), *user_routes(s), *task_routes(s), *settings_routes(s), *thread_routes(s),
                        *node_routes(lambda: orch.controlplane.admin if orch.controlplane else None),
                        openai_router(s)],
        middleware=[DefineMiddleware(GatewayGuard, services=services)],  # type: ignore[arg-type]
        exception_handlers={psycopg.DataError: _data_error},
    )
    return [router]


async def start_gateway(orch: Any) -> GatewayServices:
    """Build the services over the open, migrated database; seed `system` and the initial admin."""
    s = orch.settings
    db = orch.db
    passwords = Passwords(s.auth.max_concurrent_hashes)
    await passwords.warm_up()  # the dummy hash unknown handles verify against
    auth = AuthService(db, s, orch.jwt_secret, passwords)
    users = UserService(db, passwords, auth)
    artifacts = ArtifactStore(s.data_path)
    audit_writer = AuditWriter(db)
    tasks = TaskService(db, s, artifacts, audit_writer, orch.wake_scheduler)
    gw = GatewayServices(settings=s, db=db, passwords=passwords, auth=auth, users=users, tasks=tasks,
                         artifacts=artifacts, audit=audit_writer, user_limiter=RateLimiter(s.gateway.user_rate_per_min),
                         client_ip=ClientIp(s.gateway.trusted_proxies), system_settings=SettingsService(db))
    gw.threads = ThreadService(db, s)
    gw.chat = ChatService(s, gw.threads, ChatAuditWriter(db), ChatLinks(
        pma=lambda: orch.pma_client, inference_url=orch.direct_inference_url, inference_models=orch.inference_models))
    try:
        await users.ensure_system_user()
        await users.ensure_initial_admin(s.orchestrator.admin_user, os.environ)
    except BaseException:
        passwords.close()
        raise
    audit_writer.start()
    gw.chat.audit.start()
    return gw

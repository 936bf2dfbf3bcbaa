"""The one place every gateway request is authenticated, authorized, rate-limited, timed out and audited.

Each route declares a `Policy` in its `opt`; `GatewayGuard` (litestar route middleware) reads it:
  1. auth=False routes (login, refresh) pass straight through;
  2. otherwise the bearer token becomes a `Principal` (DB-checked on every request, no cache) or the request is 401;
  3. the per-user rate limit (429 + Retry-After), then `admin=True` routes need a system owner/admin binding (403);
  4. the handler runs under the request deadline (503 when it passes);
  5. one audit row is queued with the final status, the roles and groups used, and the duration.
Handlers get the services and the caller with `caller(request)` (or `services_of` / `principal_of`); these read
what the guard put in the request scope, which is cheaper than litestar dependency injection on the hot path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request

from cynode.auth.principal import Principal
from cynode.auth.service import RequestMeta
from cynode.db.pool import unavailable
from cynode.errors import DomainError, Forbidden, RateLimited, Unauthenticated, Unavailable
from cynode.gateway import audit
from cynode.http.middleware import RESPONSE_STATUS

if TYPE_CHECKING:
    from cynode.gateway.services import GatewayServices

log = logging.getLogger("cynode.gateway")

Scope = dict[str, Any]


@dataclass(frozen=True)
class Policy:
    action: str
    resource: str
    auth: bool = True
    admin: bool = False
    timeout_s: float | None = None  # None: [gateway] request_timeout_s


def policy(action: str, resource: str, **kw: Any) -> dict[str, Any]:
    """`opt=` for a route handler."""
    return {"policy": Policy(action, resource, **kw)}


def bearer_token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            break
    raise Unauthenticated("a bearer token is required")


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            log.warning("ignoring an invalid gateway.trusted_proxies entry", extra={"entry": v})
    return nets


class ClientIp:
    """The socket peer, or (only when the peer is a trusted proxy) the right-most untrusted X-Forwarded-For hop."""

    def __init__(self, trusted: list[str]) -> None:
        self.trusted = _networks(trusted)

    def _is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.trusted)

    def __call__(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer = client[0] if client else None
        if not self.trusted or peer is None or not self._is_trusted(peer):
            return peer
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return peer


def request_meta(request: Request[Any, Any, Any], client_ip: ClientIp) -> RequestMeta:
    return RequestMeta(request_id=str(request.scope["state"].get("request_id", "")),
                       ip=client_ip(request.scope),  # type: ignore[arg-type]
                       user_agent=request.headers.get("user-agent"))


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    p = request.scope["state"].get("principal")
    if not isinstance(p, Principal):  # a route without an authenticated Policy asked for a principal: fail closed
        raise Unauthenticated("a bearer token is required")
    return p


def services_of(request: Request[Any, Any, Any]) -> GatewayServices:
    gw: GatewayServices | None = request.scope["state"].get("gateway")
    if gw is None:
        raise Unavailable("the gateway is starting; retry shortly", headers={"Retry-After": "2"})
    return gw


def caller(request: Request[Any, Any, Any]) -> tuple[GatewayServices, Principal]:
    """The started services and the authenticated principal of this request."""
    return services_of(request), principal_of(request)


class GatewayGuard:
    def __init__(self, app: Any, services: Any) -> None:
        self.app = app
        self.services = services  # a callable returning the started GatewayServices

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        pol: Policy | None = scope["route_handler"].opt.get("policy") if scope["type"] == "http" else None
        if pol is None:
            await self.app(scope, receive, send)
            return
        state = scope["state"]
        route = scope.get("path_template") or scope["path"]
        state["route"] = route
        gw: GatewayServices | None = self.services()
        if gw is None:
            raise Unavailable("the gateway is starting; retry shortly", headers={"Retry-After": "2"})
        state["gateway"] = gw
        if not pol.auth:
            await self.app(scope, receive, send)
            return
        rec = audit.AuditRecord(request_id=state.get("request_id", ""), method=scope["method"], route=route,
                                action=pol.action, resource_type=pol.resource)
        token = audit.current.set(rec)
        try:
            await self._authorize(gw, pol, scope, state, rec)
            timeout = pol.timeout_s or gw.settings.gateway.request_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    await self.app(scope, receive, send)
            except TimeoutError:
                if RESPONSE_STATUS in state:
                    raise
                raise Unavailable("the request took too long; retry", headers={"Retry-After": "5"}) from None
        except DomainError as e:
            state.setdefault(RESPONSE_STATUS, e.status)
            raise
        except BaseException as e:
            state.setdefault(RESPONSE_STATUS, 503 if unavailable(e) else 500)  # as the error handlers will answer
            raise
        finally:
            rec.finish(state.get(RESPONSE_STATUS) or 500)
            gw.audit.submit(rec)
            audit.current.reset(token)

    async def _authorize(self, gw: GatewayServices, pol: Policy, scope: Scope, state: dict[str, Any],
                         rec: audit.AuditRecord) -> None:
        principal = await gw.auth.authenticate(bearer_token(scope))
        state["principal"] = principal
        state["user_id"] = principal.user_id
        state["subject_type"] = "user"
        rec.user_id, rec.subject_type = principal.user_id, "user"
        rec.roles, rec.group_ids = principal.roles, principal.group_ids
        wait = gw.user_limiter.hit(principal.user_id)
        if wait:
            raise RateLimited("too many requests; slow down", headers={"Retry-After": str(wait)})
        if pol.admin:
            rec.scope_type = "system"
            if not principal.is_admin:
                rec.decision = "deny"
                raise Forbidden("this action needs a system admin")

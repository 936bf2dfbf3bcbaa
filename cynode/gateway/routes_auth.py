"""Auth and user routes (orchestrator.md §3): thin handlers that decode, call a service, encode."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post

from cynode.config import Settings
from cynode.contracts.auth import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    TokenPair,
)
from cynode.contracts.users import PasswordReset, UserActive, UserCreate, UserOut
from cynode.gateway import audit
from cynode.gateway.deps import PathStr
from cynode.gateway.guard import caller, policy, request_meta, services_of
from cynode.gateway.validation import read_body

Req = Request[Any, Any, Any]


def auth_routes(settings: Settings) -> list[Any]:
    limit = settings.gateway.max_auth_body_bytes

    @post("/v1/auth/login", status_code=200, request_max_body_size=limit, opt=policy("login", "session", auth=False))
    async def login(request: Req) -> TokenPair:
        gw = services_of(request)
        body = await read_body(request, LoginRequest)
        return await gw.auth.login(body.handle, body.password, request_meta(request, gw.client_ip))

    @post("/v1/auth/refresh", status_code=200, request_max_body_size=limit,
          opt=policy("refresh", "session", auth=False))
    async def refresh(request: Req) -> TokenPair:
        gw = services_of(request)
        body = await read_body(request, RefreshRequest)
        return await gw.auth.refresh(body.refresh_token, request_meta(request, gw.client_ip))

    @post("/v1/auth/logout", status_code=204, request_max_body_size=limit, opt=policy("logout", "session"))
    async def logout(request: Req) -> None:
        gw, principal = caller(request)
        body = await read_body(request, LogoutRequest, allow_empty=True)
        await gw.auth.logout(principal, body.refresh_token, request_meta(request, gw.client_ip))

    @post("/v1/auth/tokens", status_code=201, request_max_body_size=limit, opt=policy("create", "api_token"))
    async def create_token(request: Req) -> ApiTokenCreated:
        gw, principal = caller(request)
        created = await gw.auth.create_api_token(principal, await read_body(request, ApiTokenCreate))
        audit.note(resource_id=created.id)
        return created

    @get("/v1/auth/tokens", opt=policy("list", "api_token"))
    async def list_tokens(request: Req) -> ApiTokenList:
        gw, principal = caller(request)
        return ApiTokenList(tokens=await gw.auth.list_api_tokens(principal))

    @delete("/v1/auth/tokens/{token_id:str}", status_code=204, opt=policy("revoke", "api_token"))
    async def revoke_token(request: Req, token_id: PathStr) -> None:
        gw, principal = caller(request)
        audit.note(resource_id=token_id[:64])
        await gw.auth.revoke_api_token(principal, token_id)

    return [login, refresh, logout, create_token, list_tokens, revoke_token]


def user_routes(settings: Settings) -> list[Any]:
    limit = settings.gateway.max_auth_body_bytes

    def admin(action: str) -> dict[str, Any]:
        return policy(action, "user", admin=True)

    @get("/v1/users/me", opt=policy("read_me", "user"))
    async def me(request: Req) -> UserOut:
        gw, principal = caller(request)
        audit.note(resource_id=principal.user_id)
        return await gw.users.me(principal)

    @post("/v1/users", status_code=201, request_max_body_size=limit, opt=admin("create"))
    async def create_user(request: Req) -> UserOut:
        gw, principal = caller(request)
        user = await gw.users.create_user(principal, await read_body(request, UserCreate),
                                          request_meta(request, gw.client_ip))
        audit.note(resource_id=user.id)
        return user

    @post("/v1/users/{user_id:str}/disable", status_code=200, request_max_body_size=limit, opt=admin("disable"))
    async def disable(request: Req, user_id: PathStr) -> UserActive:
        gw, principal = caller(request)
        audit.note(resource_id=user_id[:64])
        return await gw.users.set_active(principal, user_id, False, request_meta(request, gw.client_ip))

    @post("/v1/users/{user_id:str}/enable", status_code=200, request_max_body_size=limit, opt=admin("enable"))
    async def enable(request: Req, user_id: PathStr) -> UserActive:
        gw, principal = caller(request)
        audit.note(resource_id=user_id[:64])
        return await gw.users.set_active(principal, user_id, True, request_meta(request, gw.client_ip))

    @post("/v1/users/{user_id:str}/revoke_sessions", status_code=204, request_max_body_size=limit,
          opt=admin("revoke_sessions"))
    async def revoke_sessions(request: Req, user_id: PathStr) -> None:
        gw, principal = caller(request)
        audit.note(resource_id=user_id[:64])
        await gw.users.revoke_sessions(principal, user_id, request_meta(request, gw.client_ip))

    @post("/v1/users/{user_id:str}/reset_password", status_code=204, request_max_body_size=limit,
          opt=admin("reset_password"))
    async def reset_password(request: Req, user_id: PathStr) -> None:
        gw, principal = caller(request)
        audit.note(resource_id=user_id[:64])
        body = await read_body(request, PasswordReset)
        await gw.users.reset_password(principal, user_id, body.password, request_meta(request, gw.client_ip))

    return [me, create_user, disable, enable, revoke_sessions, reset_password]

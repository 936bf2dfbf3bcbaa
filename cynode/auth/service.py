"""Login, refresh rotation with reuse detection, logout, bearer authentication and personal API tokens.

Every request's token is checked against the database (session or token active, user active): there is no cache, so
logout and revocation take effect at once (orchestrator.md §3, DECISIONS.md 12).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from cynode.auth.limits import Lockout, RateLimiter
from cynode.auth.passwords import HASH_ALG, Passwords
from cynode.auth.principal import Principal
from cynode.auth.store import IdentityRepo, Row
from cynode.auth.tokens import (
    PAT_PREFIX,
    JwtVerifier,
    encode_jwt,
    handle_fingerprint,
    new_api_token,
    new_refresh_token,
    token_hash,
)
from cynode.config import Settings, parse_duration
from cynode.contracts.auth import ApiTokenCreate, ApiTokenCreated, ApiTokenInfo, TokenPair
from cynode.db.coalesce import Coalescer
from cynode.db.pool import Database
from cynode.errors import DomainError, NotFound, RateLimited, Unauthenticated
from cynode.gateway.timefmt import rfc3339, rfc3339_opt
from cynode.ids import canonical_uuid

log = logging.getLogger("cynode.auth")

INVALID_CREDENTIALS = "Invalid credentials"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the auth audit records about a request (never its body or token)."""

    request_id: str
    ip: str | None = None
    user_agent: str | None = None


class AuditWriteFailed(DomainError):
    """An auth event could not be recorded: the request fails with a generic 500 (orchestrator.md §12)."""


class AuthService:
    def __init__(self, db: Database, settings: Settings, jwt_secret: bytes, passwords: Passwords) -> None:
        self.db = db
        self.secret = jwt_secret
        self.passwords = passwords
        self.verify_access = JwtVerifier(jwt_secret, "access")
        self.access_ttl = int(parse_duration(settings.auth.access_ttl))
        self.refresh_ttl = int(parse_duration(settings.auth.refresh_ttl))
        self.login_limiter = RateLimiter(settings.gateway.login_rate_per_min)
        self.lockout = Lockout(settings.auth.lockout_failures, parse_duration(settings.auth.lockout_window))
        # Session checks of concurrent requests share one query; each still starts after its request arrived.
        self._sessions: Coalescer[str, Row] = Coalescer(self._live_sessions)

    # -- audit -----------------------------------------------------------------------------------------------------

    async def audit(self, event_type: str, meta: RequestMeta, *, success: bool, user_id: str | None = None,
                    subject_handle: str | None = None, reason: str | None = None,
                    repo: IdentityRepo | None = None) -> None:
        """Record an auth event; failing to do so fails the request (auth events are never lost quietly)."""
        try:
            if repo is not None:
                await repo.insert_auth_audit(event_type, success=success, user_id=user_id,
                                             subject_handle=subject_handle, ip=meta.ip, user_agent=meta.user_agent,
                                             reason=reason, request_id=meta.request_id)
                return
            async with self.db.connection() as conn:
                await IdentityRepo(conn).insert_auth_audit(
                    event_type, success=success, user_id=user_id, subject_handle=subject_handle, ip=meta.ip,
                    user_agent=meta.user_agent, reason=reason, request_id=meta.request_id)
        except Exception as e:
            log.error("auth audit write failed", extra={"event_type": event_type, "request_id": meta.request_id,
                                                        "error": type(e).__name__})
            raise AuditWriteFailed("internal error") from None

    # -- login / refresh / logout ----------------------------------------------------------------------------------

    def _limit(self, kind: str, meta: RequestMeta) -> int:
        return self.login_limiter.hit(f"{kind}:{meta.ip or '-'}")

    async def login(self, handle: str, password: str, meta: RequestMeta) -> TokenPair:
        wait = self._limit("login", meta)
        if wait:
            await self.audit("login_failure", meta, success=False, subject_handle=handle_fingerprint(handle),
                             reason="rate_limited")
            raise RateLimited("too many login attempts; retry later", headers={"Retry-After": str(wait)})
        async with self.db.connection() as conn:
            user = await IdentityRepo(conn).user_for_login(handle)
        subject = handle if user is not None else handle_fingerprint(handle)
        user_id = user["id"] if user is not None else None
        wait = self.lockout.locked(handle)
        if wait:
            await self.audit("login_failure", meta, success=False, user_id=user_id, subject_handle=subject,
                             reason="locked_out")
            raise RateLimited("too many failed logins for this account; retry later",
                              headers={"Retry-After": str(wait)})
        phc = bytes(user["password_hash"]).decode() if user is not None and user["password_hash"] else None
        ok = await self.passwords.verify(phc, password)  # a dummy hash when there is no user or credential
        reason = None
        if user is None:
            reason = "unknown_user"
        elif not ok:
            reason = "invalid_password"
        elif not user["is_active"]:
            reason = "user_inactive"
        if reason is not None or user is None or phc is None:
            self.lockout.failure(handle)
            await self.audit("login_failure", meta, success=False, user_id=user_id, subject_handle=subject,
                             reason=reason or "invalid_password")
            raise Unauthenticated(INVALID_CREDENTIALS)
        self.lockout.success(handle)
        new_phc = await self.passwords.hash(password) if Passwords.needs_rehash(phc) else None
        refresh = new_refresh_token()
        async with self.db.transaction() as conn:  # no session is created when its audit row cannot be written
            repo = IdentityRepo(conn)
            if new_phc is not None:
                await repo.upsert_credential(user["id"], new_phc, HASH_ALG)
            sid = await repo.insert_session(user["id"], token_hash(refresh), str(uuid.uuid4()), self.refresh_ttl)
            await self.audit("login_success", meta, success=True, user_id=user["id"], subject_handle=handle,
                             repo=repo)
        return self._pair(user["id"], user["handle"], sid, refresh)

    def _pair(self, user_id: str, handle: str, sid: str, refresh: str) -> TokenPair:
        access, _ = encode_jwt({"sub": user_id, "handle": handle, "sid": sid}, self.secret, self.access_ttl, "access")
        return TokenPair(access_token=access, refresh_token=refresh, token_type="Bearer",
                         expires_in=self.access_ttl, refresh_expires_in=self.refresh_ttl)

    async def refresh(self, refresh_token: str, meta: RequestMeta) -> TokenPair:
        wait = self._limit("refresh", meta)
        if wait:
            await self.audit("refresh_failure", meta, success=False, reason="rate_limited")
            raise RateLimited("too many refresh attempts; retry later", headers={"Retry-After": str(wait)})
        new_token = new_refresh_token()
        failure: tuple[str, str | None, str | None] | None = None  # (reason, user_id, handle)
        result: tuple[str, str, str] | None = None
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            s = await repo.session_for_update(token_hash(refresh_token))
            if s is None:
                failure = ("invalid_token", None, None)
            elif s["rotated"]:
                # A rotated token came back: someone holds a copy. End every session of the user.
                await repo.revoke_user_sessions(s["user_id"])
                failure = ("reuse_detected", s["user_id"], s["handle"])
            elif not s["is_active"]:
                failure = ("revoked", s["user_id"], s["handle"])
            elif not s["unexpired"]:
                failure = ("expired", s["user_id"], s["handle"])
            elif not s["user_active"]:
                failure = ("user_inactive", s["user_id"], s["handle"])
            else:
                await repo.rotate_session(s["id"])
                sid = await repo.insert_session(s["user_id"], token_hash(new_token), s["family_id"], self.refresh_ttl)
                await self.audit("refresh_success", meta, success=True, user_id=s["user_id"],
                                 subject_handle=s["handle"], repo=repo)
                result = (s["user_id"], s["handle"], sid)
        if failure is not None:  # after the commit: a failed audit write must not undo a reuse revocation
            await self.audit("refresh_failure", meta, success=False, user_id=failure[1], subject_handle=failure[2],
                             reason=failure[0])
        if result is None:
            raise Unauthenticated("invalid refresh token")
        return self._pair(*result, refresh=new_token)

    async def logout(self, principal: Principal, refresh_token: str | None, meta: RequestMeta) -> None:
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            if principal.session_id is not None:
                await repo.end_session(principal.session_id, principal.user_id)
            if refresh_token:
                await repo.end_session_by_hash(token_hash(refresh_token), principal.user_id)
            await self.audit("logout", meta, success=True, user_id=principal.user_id,
                             subject_handle=principal.handle, repo=repo)

    # -- bearer authentication -------------------------------------------------------------------------------------

    async def authenticate(self, bearer: str) -> Principal:
        """Resolve a bearer token to a live principal; any doubt is a 401."""
        if bearer.startswith(PAT_PREFIX):
            async with self.db.connection() as conn:
                row = await IdentityRepo(conn).principal_by_api_token(token_hash(bearer))
            if row is None:
                raise Unauthenticated("invalid or revoked token")
            return _principal(row, "api_token", token_id=row["token_id"])
        claims = self.verify_access(bearer)
        uid, sid = canonical_uuid(claims.get("sub")), canonical_uuid(claims.get("sid"))
        if uid is None or sid is None:
            raise Unauthenticated("invalid token")
        row = await self._sessions.get(sid)
        if row is None or row["user_id"] != uid:
            raise Unauthenticated("session ended; log in again")
        return _principal(row, "access", session_id=sid)

    async def _live_sessions(self, session_ids: list[str]) -> dict[str, Row]:
        async with self.db.connection() as conn:
            return await IdentityRepo(conn).principals_by_sessions(session_ids)

    # -- personal API tokens ---------------------------------------------------------------------------------------

    async def create_api_token(self, principal: Principal, req: ApiTokenCreate) -> ApiTokenCreated:
        token = new_api_token()
        prefix = token[: len(PAT_PREFIX) + 6]
        async with self.db.connection() as conn:
            row = await IdentityRepo(conn).insert_api_token(principal.user_id, req.name, token_hash(token), prefix,
                                                            req.expires_in_days)
        return ApiTokenCreated(id=row["id"], name=row["name"], token=token, prefix=row["prefix"],
                               created_at=rfc3339(row["created_at"]), expires_at=rfc3339_opt(row["expires_at"]))

    async def list_api_tokens(self, principal: Principal) -> list[ApiTokenInfo]:
        async with self.db.connection() as conn:
            rows = await IdentityRepo(conn).list_api_tokens(principal.user_id)
        return [_token_info(r) for r in rows]

    async def revoke_api_token(self, principal: Principal, token_id: str) -> None:
        tid = canonical_uuid(token_id)
        if tid is None:
            raise NotFound("no such token")
        async with self.db.connection() as conn:
            if not await IdentityRepo(conn).revoke_api_token(tid, principal.user_id):
                raise NotFound("no such token")


def _principal(row: Row, kind: str, *, session_id: str | None = None, token_id: str | None = None) -> Principal:
    return Principal(user_id=row["user_id"], handle=row["handle"], roles=tuple(row["roles"]),
                     group_ids=tuple(row["group_ids"]), token_kind=kind,  # type: ignore[arg-type]
                     session_id=session_id, token_id=token_id)


def _token_info(r: Row) -> ApiTokenInfo:
    return ApiTokenInfo(id=r["id"], name=r["name"], prefix=r["prefix"], created_at=rfc3339(r["created_at"]),
                        last_used_at=rfc3339_opt(r["last_used_at"]), expires_at=rfc3339_opt(r["expires_at"]),
                        revoked_at=rfc3339_opt(r["revoked_at"]))

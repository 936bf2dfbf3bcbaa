"""Local accounts (orchestrator.md §3): the reserved `system` user, the initial admin, and the admin user actions.

Users are disabled, never deleted. Disabling a user or resetting their password ends all their sessions, which kills
their access tokens at once (every request checks the session).
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import sys
from collections.abc import Mapping

import psycopg

from cynode.auth.passwords import HASH_ALG, Passwords, check_password_rules
from cynode.auth.principal import Principal
from cynode.auth.projects import ensure_default_project
from cynode.auth.service import AuthService, RequestMeta
from cynode.auth.store import IdentityRepo, Row
from cynode.config import AdminUserSettings
from cynode.contracts.users import UserActive, UserCreate, UserOut
from cynode.db.pool import Database
from cynode.errors import ConfigError, Conflict, FieldError, Invalid, NotFound
from cynode.gateway.timefmt import rfc3339
from cynode.ids import canonical_uuid

log = logging.getLogger("cynode.users")

HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
SYSTEM_HANDLE = "system"
DEFAULT_ROLES = ("member",)


def check_handle(handle: str) -> None:
    if not HANDLE_RE.fullmatch(handle):
        raise Invalid("handle: must match ^[a-z0-9][a-z0-9._-]{0,62}$",
                      [FieldError("handle", "must be 1-63 characters of a-z, 0-9, '.', '_' or '-'")])
    if handle == SYSTEM_HANDLE:
        raise Invalid("handle: 'system' is reserved", [FieldError("handle", "reserved")])


def parse_user_id(value: str) -> str:
    uid = canonical_uuid(value)
    if uid is None:
        raise Invalid("user id: must be a UUID", [FieldError("id", "must be a UUID")])
    return uid


def _user_out(row: Row, roles: list[str]) -> UserOut:
    return UserOut(id=row["id"], handle=row["handle"], is_active=row["is_active"], roles=sorted(roles),
                   created_at=rfc3339(row["created_at"]), email=row["email"])


class UserService:
    def __init__(self, db: Database, passwords: Passwords, auth: AuthService) -> None:
        self.db = db
        self.passwords = passwords
        self.auth = auth

    # -- startup seeds ---------------------------------------------------------------------------------------------

    async def ensure_system_user(self) -> None:
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            await repo.ensure_user(SYSTEM_HANDLE, is_active=False)
            user = await repo.user_by_handle(SYSTEM_HANDLE)
            assert user is not None
            await ensure_default_project(repo, user["id"], SYSTEM_HANDLE)

    async def ensure_initial_admin(self, admin: AdminUserSettings, environ: Mapping[str, str]) -> None:
        """Create the first admin when no active user holds a system admin/owner binding (idempotent)."""
        generated: str | None = None
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            await repo.bootstrap_lock()
            if await repo.active_admin_exists():
                return
            handle = admin.handle
            if not HANDLE_RE.fullmatch(handle) or handle == SYSTEM_HANDLE:
                raise ConfigError(f"orchestrator.admin_user.handle: {handle!r} is not a valid handle")
            if await repo.user_by_handle(handle) is not None:
                log.error("no active admin exists and the admin handle is taken; set orchestrator.admin_user.handle "
                          "to a free handle to create a new admin", extra={"handle": handle})
                return
            password = environ.get(admin.password_env, "")
            if password:
                try:
                    check_password_rules(password)
                except Invalid:
                    raise ConfigError(f"{admin.password_env}: the admin password must be 8-256 characters") from None
            else:
                generated = password = _random_password()
            phc = await self.passwords.hash(password)
            user = await repo.insert_user(handle, None)
            await repo.upsert_credential(user["id"], phc, HASH_ALG)
            await repo.bind_system_roles(user["id"], ["admin"], SYSTEM_HANDLE)
            await ensure_default_project(repo, user["id"], handle)
            await repo.insert_auth_audit("user_created", success=True, user_id=user["id"], subject_handle=handle,
                                         reason=None, request_id="startup")
        log.info("created the initial admin user", extra={"handle": handle})
        if generated is not None:  # once, on the console only: never through logging
            sys.stderr.write(
                f"\n  cynode: initial admin user {handle!r} created with the generated password:\n\n"
                f"      {generated}\n\n  It is shown only this once. Set {admin.password_env} to choose it "
                f"instead.\n\n")
            sys.stderr.flush()

    # -- whoami ----------------------------------------------------------------------------------------------------

    async def me(self, principal: Principal) -> UserOut:
        async with self.db.connection() as conn:
            row = await IdentityRepo(conn).user_by_id(principal.user_id)
        if row is None:
            raise NotFound("user not found")
        return _user_out(row, list(principal.roles))

    # -- admin actions ---------------------------------------------------------------------------------------------

    async def create_user(self, actor: Principal, req: UserCreate, meta: RequestMeta) -> UserOut:
        check_handle(req.handle)
        check_password_rules(req.password)
        if req.email is not None and not EMAIL_RE.fullmatch(req.email):
            raise Invalid("email: not a valid address", [FieldError("email", "not a valid address")])
        roles = sorted(set(req.roles if req.roles is not None else DEFAULT_ROLES))
        phc = await self.passwords.hash(req.password)
        try:
            async with self.db.transaction() as conn:
                repo = IdentityRepo(conn)
                unknown = sorted(set(roles) - await repo.existing_roles(roles))
                if unknown:
                    raise Invalid(f"roles: unknown role {', '.join(unknown)}", [FieldError("roles", "unknown role")])
                user = await repo.insert_user(req.handle, req.email)
                await repo.upsert_credential(user["id"], phc, HASH_ALG)
                await repo.bind_system_roles(user["id"], roles, actor.handle)
                await ensure_default_project(repo, user["id"], user["handle"])
                await self.auth.audit("user_created", meta, success=True, user_id=user["id"],
                                      subject_handle=user["handle"], repo=repo)
        except psycopg.errors.UniqueViolation as e:
            what = "email" if "email" in (e.diag.constraint_name or "") else "handle"
            raise Conflict(f"a user with that {what} exists", [FieldError(what, "already taken")]) from None
        return _user_out(user, roles)

    async def _target(self, repo: IdentityRepo, user_id: str) -> Row:
        row = await repo.user_by_id(parse_user_id(user_id))
        if row is None:
            raise NotFound("user not found")
        return row

    async def set_active(self, actor: Principal, user_id: str, active: bool, meta: RequestMeta) -> UserActive:
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            user = await self._target(repo, user_id)
            if user["handle"] == SYSTEM_HANDLE:
                raise Conflict("the system user cannot be changed")
            if not active and user["id"] == actor.user_id:
                raise Conflict("you cannot disable yourself")
            row = await repo.set_user_active(user["id"], active)
            assert row is not None
            if not active:
                await repo.revoke_user_sessions(user["id"])
            await self.auth.audit("user_reenabled" if active else "user_disabled", meta, success=True,
                                  user_id=user["id"], subject_handle=user["handle"], repo=repo)
        return UserActive(id=row["id"], is_active=row["is_active"])

    async def revoke_sessions(self, actor: Principal, user_id: str, meta: RequestMeta) -> None:
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            user = await self._target(repo, user_id)
            await repo.revoke_user_sessions(user["id"])
            await self.auth.audit("session_revoked", meta, success=True, user_id=user["id"],
                                  subject_handle=user["handle"], repo=repo)

    async def reset_password(self, actor: Principal, user_id: str, password: str, meta: RequestMeta) -> None:
        check_password_rules(password)
        uid = parse_user_id(user_id)
        phc = await self.passwords.hash(password)
        async with self.db.transaction() as conn:
            repo = IdentityRepo(conn)
            user = await self._target(repo, uid)
            if user["handle"] == SYSTEM_HANDLE:
                raise Conflict("the system user has no password")
            await repo.upsert_credential(user["id"], phc, HASH_ALG)
            await repo.revoke_user_sessions(user["id"])
            await self.auth.audit("password_reset", meta, success=True, user_id=user["id"],
                                  subject_handle=user["handle"], repo=repo)


def _random_password(length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))

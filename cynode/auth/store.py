"""The identity repository: one method per query, on a connection the caller owns (so it can join a transaction)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from cynode.auth import queries as q
from cynode.db.repo import Repo, Row


def valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class IdentityRepo(Repo):
    async def _run(self, sql: str, params: dict[str, Any]) -> int:
        cur = await self.conn.execute(sql, params)
        return cur.rowcount

    # -- principal -------------------------------------------------------------------------------------------------

    async def principals_by_sessions(self, session_ids: list[str]) -> dict[str, Row]:
        """The principal of each live session among `session_ids` (canonical UUID text), by session id."""
        rows = await self._all(q.PRINCIPALS_BY_SESSIONS, {"sids": session_ids})
        return {r["session_id"]: r for r in rows}

    async def principal_by_api_token(self, token_hash: bytes) -> Row | None:
        return await self._one(q.PRINCIPAL_BY_API_TOKEN, {"hash": token_hash})

    # -- users -----------------------------------------------------------------------------------------------------

    async def user_for_login(self, handle: str) -> Row | None:
        return await self._one(q.USER_FOR_LOGIN, {"handle": handle})

    async def user_by_id(self, user_id: str) -> Row | None:
        return await self._one(q.USER_BY_ID, {"id": user_id})

    async def user_by_handle(self, handle: str) -> Row | None:
        return await self._one(q.USER_BY_HANDLE, {"handle": handle})

    async def insert_user(self, handle: str, email: str | None, is_active: bool = True) -> Row:
        row = await self._one(q.INSERT_USER, {"handle": handle, "email": email, "is_active": is_active})
        assert row is not None
        return row

    async def ensure_user(self, handle: str, is_active: bool) -> None:
        await self._run(q.ENSURE_USER, {"handle": handle, "is_active": is_active})

    async def set_user_active(self, user_id: str, active: bool) -> Row | None:
        return await self._one(q.SET_USER_ACTIVE, {"id": user_id, "active": active})

    async def upsert_credential(self, user_id: str, phc: str, alg: str) -> None:
        await self._run(q.UPSERT_CREDENTIAL, {"user_id": user_id, "hash": phc.encode(), "alg": alg})

    # -- roles -----------------------------------------------------------------------------------------------------

    async def existing_roles(self, names: list[str]) -> set[str]:
        return {r["name"] for r in await self._all(q.ROLE_NAMES, {"names": names})}

    async def bind_system_roles(self, user_id: str, names: list[str], by: str) -> None:
        await self._run(q.BIND_SYSTEM_ROLES, {"user_id": user_id, "names": names, "by": by})

    async def system_roles(self, user_id: str) -> list[str]:
        return [r["name"] for r in await self._all(q.USER_SYSTEM_ROLES, {"user_id": user_id})]

    async def active_admin_exists(self) -> bool:
        row = await self._one(q.ACTIVE_ADMIN_EXISTS, {})
        return bool(row and row["present"])

    async def bootstrap_lock(self) -> None:
        await self.conn.execute(q.BOOTSTRAP_LOCK)

    # -- projects --------------------------------------------------------------------------------------------------

    async def get_or_create_project(self, slug: str, display_name: str) -> Row | None:
        return await self._one(q.GET_OR_CREATE_PROJECT, {"slug": slug, "display_name": display_name})

    async def bind_project_owner(self, user_id: str, project_id: str) -> None:
        await self._run(q.BIND_PROJECT_OWNER, {"user_id": user_id, "project_id": project_id})

    async def accessible_project(self, project_id: uuid.UUID, user_id: str, group_ids: list[str],
                                 is_admin: bool) -> Row | None:
        return await self._one(q.ACCESSIBLE_PROJECT, {"project_id": project_id, "user_id": user_id,
                                                      "group_ids": group_ids, "is_admin": is_admin})

    # -- sessions --------------------------------------------------------------------------------------------------

    async def insert_session(self, user_id: str, token_hash: bytes, family_id: str, ttl_s: float) -> str:
        row = await self._one(q.INSERT_SESSION, {"user_id": user_id, "hash": token_hash, "family_id": family_id,
                                                 "ttl_s": ttl_s})
        assert row is not None
        return str(row["id"])

    async def session_for_update(self, token_hash: bytes) -> Row | None:
        return await self._one(q.SESSION_BY_HASH_FOR_UPDATE, {"hash": token_hash})

    async def rotate_session(self, session_id: str) -> None:
        await self._run(q.ROTATE_SESSION, {"id": session_id})

    async def revoke_user_sessions(self, user_id: str) -> int:
        return await self._run(q.REVOKE_USER_SESSIONS, {"user_id": user_id})

    async def end_session(self, session_id: str, user_id: str) -> int:
        return await self._run(q.END_SESSION, {"id": session_id, "user_id": user_id})

    async def end_session_by_hash(self, token_hash: bytes, user_id: str) -> int:
        return await self._run(q.END_SESSION_BY_HASH, {"hash": token_hash, "user_id": user_id})

    # -- personal API tokens ---------------------------------------------------------------------------------------

    async def insert_api_token(self, user_id: str, name: str, token_hash: bytes, prefix: str,
                               days: int | None) -> Row:
        row = await self._one(q.INSERT_API_TOKEN, {"user_id": user_id, "name": name, "hash": token_hash,
                                                   "prefix": prefix, "days": days})
        assert row is not None
        return row

    async def list_api_tokens(self, user_id: str) -> list[Row]:
        return await self._all(q.LIST_API_TOKENS, {"user_id": user_id})

    async def revoke_api_token(self, token_id: str, user_id: str) -> bool:
        return await self._one(q.REVOKE_API_TOKEN, {"id": token_id, "user_id": user_id}) is not None

    # -- audit -----------------------------------------------------------------------------------------------------

    async def insert_auth_audit(self, event_type: str, *, success: bool, user_id: str | None = None,
                                subject_handle: str | None = None, ip: str | None = None,
                                user_agent: str | None = None, reason: str | None = None,
                                request_id: str | None = None) -> None:
        await self._run(q.INSERT_AUTH_AUDIT, {
            "event_type": event_type, "user_id": user_id, "subject_handle": subject_handle, "success": success,
            "ip": valid_ip(ip), "user_agent": (user_agent or None) and user_agent[:512], "reason": reason,
            "request_id": request_id,
        })

"""System settings (orchestrator.md §11): admin-only, versioned with optimistic concurrency, every write audited.

Other modules react to changes (the PM model selection re-runs when one of its keys changes, §8.3) by subscribing:
`orch.gateway.system_settings.subscribe(callback)`; the callback gets the changed key after the commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, delete, get, put
from psycopg.types.json import Jsonb

from cynode.auth.principal import Principal
from cynode.config import Settings
from cynode.contracts.settings import SettingDeleted, SettingOut, SettingPut, SettingsList, SettingWritten
from cynode.db.pool import Database
from cynode.errors import Conflict, FieldError, Invalid, NotFound
from cynode.gateway import audit
from cynode.gateway.deps import PathStr
from cynode.gateway.guard import caller, policy, services_of
from cynode.gateway.timefmt import rfc3339
from cynode.gateway.validation import check_no_nul, read_body
from cynode.http.pagination import decode_cursor, encode_cursor, parse_limit

Req = Request[Any, Any, Any]
log = logging.getLogger("cynode.gateway.settings")

MAX_VALUE_BYTES = 64 * 1024
VALUE_TYPES = ("string", "number", "boolean", "object", "array")
SECRET_SUFFIXES = ("password", "secret", "token", "api_key")
_KEY = re.compile(r"^[^\s\x00-\x1f\x7f]{1,256}$")

PM = "agents.project_manager.model."
PM_KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    PM + "selection.execution_mode": ("string", ("auto", "force_local", "force_external")),
    PM + "selection.mode": ("string", ("auto_sliding_scale", "fixed_model")),
    PM + "selection.prefer_orchestrator_host": ("boolean", None),
    PM + "local_default_ollama_model": ("string", None),
    PM + "warmup_timeout_s": ("number", None),
}

# -- SQL -------------------------------------------------------------------------------------------------------------

LIST = """
SELECT key, value, value_type, version, updated_at, updated_by FROM system_settings
WHERE (%(prefix)s::text IS NULL OR starts_with(key, %(prefix)s::text))
  AND (%(after)s::text IS NULL OR key > %(after)s::text)
ORDER BY key LIMIT %(limit)s
"""
GET = "SELECT key, value, value_type, version, updated_at, updated_by FROM system_settings WHERE key = %(key)s"
GET_FOR_UPDATE = GET + " FOR UPDATE"
INSERT = """
INSERT INTO system_settings (key, value, value_type, version, updated_by)
VALUES (%(key)s, %(value)s, %(value_type)s, 1, %(by)s) ON CONFLICT (key) DO NOTHING RETURNING version
"""
UPDATE = """
UPDATE system_settings SET value = %(value)s, value_type = %(value_type)s, version = version + 1, updated_at = now(),
    updated_by = %(by)s
WHERE key = %(key)s RETURNING version
"""
DELETE = "DELETE FROM system_settings WHERE key = %(key)s"
AUDIT = """
INSERT INTO system_settings_audit_log (key, old_value, new_value, changed_by, reason)
VALUES (%(key)s, %(old)s, %(new)s, %(by)s, %(reason)s)
"""


def _bad(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", [FieldError(field, message)])


def check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise _bad("key", "1-256 characters, no whitespace or control characters")


def value_type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return None


def check_value(key: str, req: SettingPut) -> str:
    """The value_type to store: given or inferred, matching the value, within 64 KiB; known PM keys are checked."""
    if key.rsplit(".", 1)[-1].lower() in SECRET_SUFFIXES:
        raise _bad("key", "secret-like keys are not stored in settings (use credentials)")
    actual = value_type_of(req.value)
    if actual is None:
        raise _bad("value", "must be a string, number, boolean, object or array")
    if req.value_type is not None and req.value_type not in VALUE_TYPES:
        raise _bad("value_type", "must be one of " + ", ".join(VALUE_TYPES))
    if req.value_type is not None and req.value_type != actual:
        raise _bad("value_type", f"the value is a {actual}, not a {req.value_type}")
    if len(msgspec.json.encode(req.value)) > MAX_VALUE_BYTES:
        raise _bad("value", "at most 64 KiB")
    known = PM_KEYS.get(key)
    if known is not None:
        want, allowed = known
        if actual != want:
            raise _bad("value", f"{key} takes a {want}")
        if allowed is not None and req.value not in allowed:
            raise _bad("value", "must be one of " + ", ".join(allowed))
    return actual


def _out(row: dict[str, Any]) -> SettingOut:
    return SettingOut(key=row["key"], value=row["value"], value_type=row["value_type"], version=row["version"],
                      updated_at=rfc3339(row["updated_at"]), updated_by=row["updated_by"])


class SettingsService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._subscribers: list[Callable[[str], Any]] = []

    def subscribe(self, callback: Callable[[str], Any]) -> None:
        self._subscribers.append(callback)

    def _changed(self, key: str) -> None:
        for cb in self._subscribers:
            try:
                cb(key)
            except Exception:
                log.exception("a settings subscriber failed", extra={"key": key})

    async def list_settings(self, prefix: str | None, limit: int, cursor: str | None) -> SettingsList:
        if prefix is not None and not _KEY.fullmatch(prefix):
            raise _bad("prefix", "1-256 characters, no whitespace or control characters")
        after = decode_cursor(cursor, tuple[str])[0] if cursor else None
        check_no_nul(after, "cursor")
        async with self.db.connection() as conn:
            cur = await conn.execute(LIST, {"prefix": prefix, "after": after, "limit": limit + 1})
            rows = await cur.fetchall()
        page = rows[:limit]
        nxt = encode_cursor([page[-1]["key"]]) if len(rows) > limit else None
        return SettingsList(settings=[_out(r) for r in page], next_cursor=nxt)

    async def get(self, key: str) -> SettingOut:
        check_key(key)
        async with self.db.connection() as conn:
            cur = await conn.execute(GET, {"key": key})
            row = await cur.fetchone()
        if row is None:
            raise NotFound("setting not found")
        return _out(row)

    async def put(self, actor: Principal, key: str, req: SettingPut) -> SettingWritten:
        check_key(key)
        value_type = check_value(key, req)
        params = {"key": key, "value": Jsonb(req.value), "value_type": value_type, "by": actor.handle}
        async with self.db.transaction() as conn:
            for _ in range(5):
                cur = await conn.execute(GET_FOR_UPDATE, {"key": key})
                old = await cur.fetchone()
                if old is None:
                    if req.expected_version not in (None, 0):
                        raise Conflict("the setting does not exist at the expected version")
                    cur = await conn.execute(INSERT, params)
                else:
                    if req.expected_version is not None and req.expected_version != old["version"]:
                        raise Conflict(f"version mismatch: the setting is at version {old['version']}")
                    cur = await conn.execute(UPDATE, params)
                row = await cur.fetchone()
                if row is not None:
                    break
            else:
                raise Conflict("the setting changed concurrently; retry")
            await conn.execute(AUDIT, {"key": key, "old": Jsonb(old["value"]) if old else None,
                                       "new": Jsonb(req.value), "by": actor.handle, "reason": req.reason})
        self._changed(key)
        return SettingWritten(key=key, version=row["version"])

    async def delete(self, actor: Principal, key: str, expected_version: int | None) -> SettingDeleted:
        check_key(key)
        async with self.db.transaction() as conn:
            cur = await conn.execute(GET_FOR_UPDATE, {"key": key})
            old = await cur.fetchone()
            if old is None:
                raise NotFound("setting not found")
            if expected_version is not None and expected_version != old["version"]:
                raise Conflict(f"version mismatch: the setting is at version {old['version']}")
            await conn.execute(DELETE, {"key": key})
            await conn.execute(AUDIT, {"key": key, "old": Jsonb(old["value"]), "new": None, "by": actor.handle,
                                       "reason": None})
        self._changed(key)
        return SettingDeleted(key=key, deleted=True)


def _version_param(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise _bad("expected_version", "must be a non-negative integer")
    return int(raw)


def settings_routes(settings: Settings) -> list[Any]:
    def admin(action: str) -> dict[str, Any]:
        return policy(action, "settings", admin=True)

    @get("/v1/settings", opt=admin("list"))
    async def list_settings(request: Req) -> SettingsList:
        gw = services_of(request)
        qp = request.query_params
        return await gw.system_settings.list_settings(qp.get("prefix") or None, parse_limit(qp.get("limit")),
                                             qp.get("cursor"))

    @get("/v1/settings/{key:str}", opt=admin("read"))
    async def get_setting(request: Req, key: PathStr) -> SettingOut:
        gw = services_of(request)
        audit.note(resource_id=key[:256])
        return await gw.system_settings.get(key)

    @put("/v1/settings/{key:str}", status_code=200, request_max_body_size=settings.gateway.max_body_bytes,
         opt=admin("write"))
    async def put_setting(request: Req, key: PathStr) -> SettingWritten:
        gw, principal = caller(request)
        audit.note(resource_id=key[:256])
        return await gw.system_settings.put(principal, key, await read_body(request, SettingPut))

    @delete("/v1/settings/{key:str}", status_code=200, opt=admin("delete"))
    async def delete_setting(request: Req, key: PathStr) -> SettingDeleted:
        gw, principal = caller(request)
        audit.note(resource_id=key[:256])
        version = _version_param(request.query_params.get("expected_version"))
        return await gw.system_settings.delete(principal, key, version)

    return [list_settings, get_setting, put_setting, delete_setting]

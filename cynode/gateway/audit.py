"""The gateway audit trail (orchestrator.md §12): one `gateway_audit_log` row per authenticated request and per denial.

Rows carry the action, resource, decision, status, the roles and groups used, and the duration; never bodies,
tokens or prompts. To keep the hot path at one database round trip, rows are queued and a background writer inserts
them in batches within a second (db/batch.py); `stop()` flushes what is left, and a batch that fails is retried (and
logged), so no row is dropped silently. Task create writes its row inside its own transaction instead (`write_in`).

Services describe the request they serve through `note(...)`, which updates the current request's record (a
ContextVar set by the gateway middleware); outside a request it does nothing.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

import msgspec
from psycopg.types.json import Json

from cynode.db.batch import BatchWriter
from cynode.db.pool import Conn, Database

log = logging.getLogger("cynode.gateway.audit")

# One INSERT for a batch of records and for a single one (write_in): a JSON array of AuditRecord structs.
INSERT = """
INSERT INTO gateway_audit_log (created_at, request_id, method, route, user_id, subject_type, action, resource_type,
    resource_id, task_id, decision, status_code, roles, group_ids, scope_type, scope_id, duration_ms)
SELECT to_timestamp(r.created_at), r.request_id, r.method, r.route, r.user_id, r.subject_type, r.action,
    r.resource_type, r.resource_id, r.task_id, r.decision, r.status_code, r.roles, r.group_ids, r.scope_type,
    r.scope_id, r.duration_ms
FROM json_to_recordset(%s) AS r(created_at float8, request_id text, method text, route text, user_id uuid,
    subject_type text, action text, resource_type text, resource_id text, task_id uuid, decision text,
    status_code int, roles jsonb, group_ids jsonb, scope_type text, scope_id uuid, duration_ms int)
"""

FLUSH_INTERVAL_S = 0.5
MAX_BATCH = 5000
MAX_BACKLOG = 200_000


class AuditRecord(msgspec.Struct):
    request_id: str
    method: str
    route: str
    action: str
    resource_type: str
    started: float = msgspec.field(default_factory=time.perf_counter)
    created_at: float = msgspec.field(default_factory=time.time)  # epoch seconds; to_timestamp() in INSERT
    user_id: str | None = None
    subject_type: str | None = None
    resource_id: str | None = None
    task_id: str | None = None
    decision: str = "allow"
    status_code: int = 0
    roles: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    scope_type: str | None = None
    scope_id: str | None = None
    duration_ms: int | None = None
    written: bool = False

    def finish(self, status: int) -> None:
        self.status_code = status
        if status in (401, 403):
            self.decision = "deny"
        if self.duration_ms is None:
            self.duration_ms = round((time.perf_counter() - self.started) * 1000)


current: ContextVar[AuditRecord | None] = ContextVar("cynode_gateway_audit", default=None)


def note(**fields: Any) -> None:
    """Describe the current request for its audit row (resource_id, task_id, scope_type, scope_id, decision)."""
    rec = current.get()
    if rec is not None:
        for k, v in fields.items():
            # Ids can be the caller's text (a path segment); PostgreSQL text cannot hold NUL.
            setattr(rec, k, v.replace("\x00", "") if isinstance(v, str) else v)


def deny() -> None:
    """The request was refused for lack of access, even if it answers 404 (so that ids cannot be probed)."""
    note(decision="deny")


class AuditWriter(BatchWriter):
    def __init__(self, db: Database) -> None:
        super().__init__(db, INSERT, name="gateway audit", flush_interval_s=FLUSH_INTERVAL_S, max_batch=MAX_BATCH,
                         max_backlog=MAX_BACKLOG)

    def submit(self, rec: AuditRecord) -> None:  # type: ignore[override]
        if rec.written:  # written in its own transaction already (write_in)
            return
        rec.written = True
        super().submit(rec)

    async def write_in(self, conn: Conn, rec: AuditRecord, status: int) -> None:
        """Write the record inside the caller's transaction (a savepoint, so a failure does not undo the caller)."""
        rec.finish(status)
        try:
            async with conn.transaction():
                await conn.execute(INSERT, (Json([rec]),))
            rec.written = True
        except Exception as e:
            log.error("gateway audit write failed; queued for retry",
                      extra={"request_id": rec.request_id, "error": type(e).__name__})

"""The gateway audit trail (orchestrator.md §12): one `gateway_audit_log` row per authenticated request and per denial.

Rows carry the action, resource, decision, status, the roles and groups used, and the duration; never bodies,
tokens or prompts. To keep the hot path at one database round trip, rows are queued and a background writer inserts
them in batches within a second; `stop()` flushes what is left, and a batch that fails is retried (and logged), so
no row is dropped silently. Task create writes its row inside its own transaction instead (`write_in`).

Services describe the request they serve through `note(...)`, which updates the current request's record (a
ContextVar set by the gateway middleware); outside a request it does nothing.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from cynode.db.batch import CopyBatchWriter
from cynode.db.pool import Conn, Database

log = logging.getLogger("cynode.gateway.audit")

# Both take `AuditRecord.row()`, in this column order.
INSERT = """
INSERT INTO gateway_audit_log (created_at, request_id, method, route, user_id, subject_type, action, resource_type,
    resource_id, task_id, decision, status_code, roles, group_ids, scope_type, scope_id, duration_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)
"""

COPY = """
COPY gateway_audit_log (created_at, request_id, method, route, user_id, subject_type, action, resource_type,
    resource_id, task_id, decision, status_code, roles, group_ids, scope_type, scope_id, duration_ms) FROM STDIN
"""

FLUSH_INTERVAL_S = 0.5
MAX_BATCH = 5000
MAX_BACKLOG = 200_000


@dataclass
class AuditRecord:
    request_id: str
    method: str
    route: str
    action: str
    resource_type: str
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
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

    def row(self) -> tuple[Any, ...]:
        """The values for INSERT and COPY, in their column order."""
        return (datetime.fromtimestamp(self.created_at, UTC), self.request_id, self.method, self.route, self.user_id,
                self.subject_type, self.action, self.resource_type, self.resource_id, self.task_id, self.decision,
                self.status_code, _json_text(self.roles), _json_text(self.group_ids), self.scope_type, self.scope_id,
                self.duration_ms)

    def finish(self, status: int) -> None:
        self.status_code = status
        if status in (401, 403):
            self.decision = "deny"
        if self.duration_ms is None:
            self.duration_ms = round((time.perf_counter() - self.started) * 1000)


def _json_text(values: tuple[str, ...]) -> str:
    """A jsonb value as text (the server parses it; no per-row dumper lookup)."""
    return msgspec.json.encode(values).decode()

current: ContextVar[AuditRecord | None] = ContextVar("cynode_gateway_audit", default=None)


def note(**fields: Any) -> None:
    """Describe the current request for its audit row (resource_id, task_id, scope_type, scope_id, decision)."""
    rec = current.get()
    if rec is not None:
        for k, v in fields.items():
            setattr(rec, k, v)


def deny() -> None:
    """The request was refused for lack of access, even if it answers 404 (so that ids cannot be probed)."""
    note(decision="deny")


class AuditWriter(CopyBatchWriter):
    def __init__(self, db: Database) -> None:
        super().__init__(db, COPY, name="gateway audit", flush_interval_s=FLUSH_INTERVAL_S, max_batch=MAX_BATCH,
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
                await conn.execute(INSERT, rec.row())
            rec.written = True
        except Exception as e:
            log.error("gateway audit write failed; queued for retry",
                      extra={"request_id": rec.request_id, "error": type(e).__name__})

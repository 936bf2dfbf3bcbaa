"""`chat_audit_log` (agents.md §3.11): one row per authenticated chat completion request, whatever its outcome, with
the model, route, thread, redaction kinds and duration, never content.

Rows are queued and written in batches (db/batch.py) by a background task within half a second, so a chat turn pays no
extra round trip for its audit; `stop()` flushes what is left and a failed batch stays queued for the next try.
"""

from __future__ import annotations

import logging
import time

import msgspec

from cynode.db.batch import BatchWriter
from cynode.db.pool import Database
from cynode.gateway.chat import queries as q

log = logging.getLogger("cynode.gateway.chat.audit")

FLUSH_INTERVAL_S = 0.5
MAX_BATCH = 2000
MAX_BACKLOG = 100_000


class ChatAuditRecord(msgspec.Struct):
    request_id: str
    user_id: str
    started: float = msgspec.field(default_factory=time.perf_counter)
    created_at: float = msgspec.field(default_factory=time.time)  # epoch seconds; to_timestamp() in AUDIT_INSERT
    project_id: str | None = None
    model: str | None = None
    route: str | None = None  # pma | direct_inference
    thread_id: str | None = None
    stream: bool = False
    outcome: str = "error"  # success | error | canceled | timeout
    error_code: str | None = None
    redaction_kinds: tuple[str, ...] = ()
    duration_ms: int | None = None
    done: bool = False

    def finish(self, outcome: str, error_code: str | None = None) -> bool:
        """Set the outcome once; False when it was already set (the first outcome wins)."""
        if self.done:
            return False
        self.done = True
        self.outcome, self.error_code = outcome, error_code
        self.duration_ms = round((time.perf_counter() - self.started) * 1000)
        return True


class ChatAuditWriter(BatchWriter):
    def __init__(self, db: Database) -> None:
        super().__init__(db, q.AUDIT_INSERT, name="chat audit", flush_interval_s=FLUSH_INTERVAL_S,
                         max_batch=MAX_BATCH, max_backlog=MAX_BACKLOG)

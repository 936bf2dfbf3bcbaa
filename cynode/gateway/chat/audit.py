"""`chat_audit_log` (agents.md §3.11): one row per authenticated chat completion request, whatever its outcome, with
the model, route, thread, redaction kinds and duration, never content.

Rows are queued and written in batches (COPY) by a background task within half a second, so a chat turn pays no
extra round trip for its audit; `stop()` flushes what is left and a failed batch stays queued for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from cynode.db.pool import Database
from cynode.gateway.chat import queries as q

log = logging.getLogger("cynode.gateway.chat.audit")

FLUSH_INTERVAL_S = 0.5
MAX_BATCH = 2000
MAX_BACKLOG = 100_000


@dataclass
class ChatAuditRecord:
    request_id: str
    user_id: str
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
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

    def row(self) -> tuple[Any, ...]:
        return (datetime.fromtimestamp(self.created_at, UTC), self.user_id, self.project_id, self.model, self.outcome,
                self.error_code, bool(self.redaction_kinds), Jsonb(list(self.redaction_kinds)), self.duration_ms,
                self.request_id, self.route, self.thread_id, self.stream)


class ChatAuditWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[ChatAuditRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self._late: set[asyncio.Task[bool]] = set()

    def submit(self, rec: ChatAuditRecord) -> None:
        if len(self._queue) >= MAX_BACKLOG:
            log.error("chat audit backlog full; dropping the oldest row",
                      extra={"request_id": self._queue[0].request_id})
            self._queue.pop(0)
        self._queue.append(rec)
        if self._stopping:  # finished during shutdown: write it now (a failure is logged)
            task = asyncio.ensure_future(self.flush())
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        elif len(self._queue) >= MAX_BATCH:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-audit-writer")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write everything queued; on failure the rows stay queued. True when nothing is left."""
        async with self._lock:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                try:
                    async with self.db.connection() as conn, conn.cursor() as cur, cur.copy(q.AUDIT_COPY) as copy:
                        for rec in batch:
                            await copy.write_row(rec.row())
                except Exception as e:
                    log.error("chat audit batch failed; will retry", extra={"rows": len(batch),
                                                                           "error": type(e).__name__})
                    return False
                del self._queue[: len(batch)]
            return True

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _ in range(5):
            if await self.flush():
                return
            await asyncio.sleep(0.5)
        log.error("chat audit rows could not be written at shutdown", extra={"rows": len(self._queue)})

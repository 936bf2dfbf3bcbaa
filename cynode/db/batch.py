"""A background writer that appends rows in batches: for audit trails written on hot paths.

Records are queued in memory and written within `flush_interval_s` (or at once when a batch fills), so a request
pays no extra round trip for its audit row. A batch goes to PostgreSQL as one JSON array (msgspec encodes the record
structs in C) that the writer's INSERT unpacks with `json_to_recordset`: about a microsecond per row in the gateway
process, where formatting COPY rows field by field in Python cost several. A failed batch stays queued and is retried
(and logged); `stop()` flushes what is left, so no row is dropped silently. Only a row PostgreSQL refuses for its
content (which no retry would change, and which would hold back every row behind it) and a backlog over
`max_backlog` (the database being gone for a long time) drop rows, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Json

from cynode.db.pool import Database

log = logging.getLogger("cynode.db.batch")


class Record(Protocol):  # a msgspec.Struct whose fields include the columns the writer's INSERT reads
    request_id: str


class BatchWriter:
    def __init__(self, db: Database, insert_sql: str, *, name: str, flush_interval_s: float = 0.5,
                 max_batch: int = 2000, max_backlog: int = 100_000) -> None:
        """`insert_sql` takes one parameter: the batch, a JSON array of records."""
        self.db = db
        self.insert_sql = insert_sql
        self.name = name
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self._queue: list[Any] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()  # one flush at a time, so no batch is written twice
        self._late: set[asyncio.Future[bool]] = set()

    def submit(self, rec: Record) -> None:
        if len(self._queue) >= self.max_backlog:
            log.error("%s backlog full; dropping the oldest row", self.name,
                      extra={"request_id": self._queue[0].request_id})
            self._queue.pop(0)
        self._queue.append(rec)
        if self._stopping:  # finished during shutdown: write it now (a failure is logged)
            late = asyncio.ensure_future(self.flush())
            self._late.add(late)
            late.add_done_callback(self._late.discard)
        elif len(self._queue) >= self.max_batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-writer")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write everything queued; on failure the rows stay queued for the next attempt. True when empty."""
        async with self._lock:
            while self._queue:
                batch = self._queue[: self.max_batch]
                try:
                    await self._insert(batch)
                except psycopg.DataError:
                    # A row whose content PostgreSQL refuses fails the same way on every retry, and would hold back
                    # every row queued after it: write the batch row by row and drop only the refused ones, loudly.
                    if not await self._insert_each(batch):
                        return False
                    continue
                except Exception as e:
                    log.error("%s batch failed; will retry", self.name,
                              extra={"rows": len(batch), "error": type(e).__name__})
                    return False
                del self._queue[: len(batch)]
            return True

    async def _insert(self, batch: list[Any]) -> None:
        async with self.db.connection() as conn:
            await conn.execute(self.insert_sql, (Json(batch),))  # encoded by msgspec (db/pool.py)

    async def _insert_each(self, batch: list[Any]) -> bool:
        for rec in batch:
            try:
                await self._insert([rec])
            except psycopg.DataError as e:
                log.error("%s row refused by the database; dropped", self.name,
                          extra={"request_id": rec.request_id, "error": type(e).__name__})
            except Exception as e:
                log.error("%s batch failed; will retry", self.name,
                          extra={"rows": len(batch), "error": type(e).__name__})
                return False
            if self._queue and self._queue[0] is rec:
                del self._queue[0]
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
        log.error("%s rows could not be written at shutdown", self.name, extra={"rows": len(self._queue)})

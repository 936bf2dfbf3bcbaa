"""The async psycopg pool: sized per orchestrator.md §1 (min 2, max 10), statement_timeout 10 s on every session.

Sizing: the gateway's request handlers and the scheduler share one pool; every request holds a connection for one
short transaction, so 10 connections serve far more than 10 concurrent requests. PostgreSQL's default
max_connections (100) leaves room for several orchestrator processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from cynode.config import DbSettings

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[dict[str, Any]]

# json/jsonb parameters and results through msgspec rather than the stdlib json module: the same JSON, several times
# faster, and job payloads, results and audit rows cross this boundary on every request.
set_json_dumps(msgspec.json.encode)
set_json_loads(msgspec.json.decode)


def unavailable(exc: BaseException) -> bool:
    """The database is out of reach or gave up on a statement (connection lost, pool timeout, statement timeout,
    deadlock): worth a retry. A client gets 503 with Retry-After, a job is not failed for it."""
    return isinstance(exc, psycopg.OperationalError)  # psycopg_pool.PoolTimeout is one too


def log_failure(logger: logging.Logger, message: str, exc: BaseException, **extra: Any) -> None:
    """A background pass failed: one warning line while the database is out of reach (each pass says so until it is
    back), the traceback for anything else."""
    if unavailable(exc):
        logger.warning("%s: the database is unavailable (%s)", message, type(exc).__name__, extra=extra)
    else:
        logger.error(message, exc_info=exc, extra=extra)


class Database:
    """A thin owner of the pool with the two ways services use it: a transaction, or a single statement."""

    def __init__(self, url: str, settings: DbSettings) -> None:
        self.url = url
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            open=False,
            timeout=settings.connect_timeout_s,
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "options": f"-c statement_timeout={settings.statement_timeout_ms}",
                "connect_timeout": max(1, int(settings.connect_timeout_s)),
            },
            name="cynode",
        )

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn:
            yield conn

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout), self.pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "not reachable now"; readiness reports it
            return False

"""The base of the small repository classes: one connection (or transaction), named SQL, dict rows."""

from __future__ import annotations

from typing import Any

from cynode.db.pool import Conn

Row = dict[str, Any]


class Repo:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _one(self, sql: str, params: dict[str, Any]) -> Row | None:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchone()

    async def _all(self, sql: str, params: dict[str, Any]) -> list[Row]:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchall()

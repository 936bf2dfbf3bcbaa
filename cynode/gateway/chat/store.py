"""Chat storage: one function per query of `queries.py`, over a connection the caller holds (so a use case decides
its own transaction)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from cynode.db.repo import Repo, Row
from cynode.gateway.chat import queries as q


class ChatRepo(Repo):
    async def lock_user_project(self, user_id: str, project_id: str) -> None:
        await self.conn.execute(q.LOCK_USER_PROJECT, {"user_id": user_id, "project_id": project_id})

    async def insert_thread(self, user_id: str, project_id: str, title: str | None) -> Row:
        row = await self._one(q.INSERT_THREAD, {"user_id": user_id, "project_id": project_id, "title": title})
        assert row is not None
        return row

    async def thread(self, thread_id: str) -> Row | None:
        return await self._one(q.THREAD_BY_ID, {"id": thread_id})

    async def list_threads(self, user_id: str, project_id: str | None, after: tuple[Any, Any] | None,
                           limit: int) -> list[Row]:
        after_at, after_id = after or (None, None)
        return await self._all(q.LIST_THREADS, {"user_id": user_id, "project_id": project_id, "after_at": after_at,
                                                "after_id": after_id, "limit": limit})

    async def start_turn(self, user_id: str, project_id: str, idle_s: int, content: str, metadata: dict[str, Any],
                         history: int) -> Row:
        row = await self._one(q.START_TURN, {"user_id": user_id, "project_id": project_id, "idle_s": idle_s,
                                             "content": content, "metadata": Jsonb(metadata), "history": history})
        assert row is not None
        return row

    async def append_message(self, thread_id: str, role: str, content: str, metadata: dict[str, Any]) -> Row:
        row = await self._one(q.APPEND_MESSAGE, {"thread_id": thread_id, "role": role, "content": content,
                                                 "metadata": Jsonb(metadata)})
        assert row is not None
        return row

    async def add_message(self, thread_id: str, role: str, content: str, metadata: dict[str, Any]) -> None:
        """`append_message` without reading the row back."""
        await self.conn.execute(q.APPEND_MESSAGE, {"thread_id": thread_id, "role": role, "content": content,
                                                   "metadata": Jsonb(metadata)})

    async def list_messages(self, thread_id: str, after: tuple[Any, Any] | None, limit: int) -> list[Row]:
        after_at, after_id = after or (None, None)
        return await self._all(q.LIST_MESSAGES, {"thread_id": thread_id, "after_at": after_at, "after_id": after_id,
                                                 "limit": limit})

    async def project_identity(self, project_id: str) -> Row | None:
        return await self._one(q.PROJECT_IDENTITY, {"id": project_id})

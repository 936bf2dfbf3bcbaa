"""Chat threads and messages (agents.md §4): the REST use cases, owner-only, and the two writes a chat turn makes.

A thread belongs to one user and one project. The active thread of a (user, project) is the one with the newest
`updated_at` if it is within `[chat] thread_idle_rotate_s`, else a new one is started; get-or-create runs under a
transaction-scoped advisory lock on (user, project), so concurrent turns never start two threads. Every message is
stored redacted; `metadata.redaction_kinds` says what was removed. Another user's thread is a 404, for admins too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cynode.auth.principal import Principal
from cynode.auth.projects import ensure_default_project
from cynode.auth.store import IdentityRepo
from cynode.config import Settings
from cynode.contracts.chat import MessageCreate, MessageList, MessageOut, ThreadCreate, ThreadList, ThreadOut
from cynode.db.pool import Database
from cynode.errors import FieldError, Invalid, NotFound
from cynode.gateway import audit
from cynode.gateway.chat.store import ChatRepo, Row
from cynode.gateway.redaction import redact_async
from cynode.gateway.timefmt import rfc3339
from cynode.http.pagination import TimeIdKey, decode_cursor, next_page_cursor
from cynode.ids import canonical_uuid

MiB = 1024 * 1024
MAX_MESSAGE_BYTES = 1 * MiB
MAX_TITLE_CHARS = 200
DEFAULT_PROJECT_CACHE = 10_000


def _bad(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", [FieldError(field, message)])


def thread_out(row: Row) -> ThreadOut:
    return ThreadOut(thread_id=row["id"], project_id=row["project_id"], title=row["title"],
                     created_at=rfc3339(row["created_at"]), updated_at=rfc3339(row["updated_at"]))


def message_out(row: Row) -> MessageOut:
    meta = row["metadata"] if isinstance(row["metadata"], dict) else None
    kinds = (meta or {}).get("redaction_kinds") or []
    return MessageOut(id=row["id"], thread_id=row["thread_id"], role=row["role"], content=row["content"],
                      metadata=meta, redaction_kinds=list(kinds), created_at=rfc3339(row["created_at"]))


@dataclass(frozen=True, slots=True)
class TurnStart:
    """Where a chat turn's user message went, and the thread's earlier messages when the turn wants them."""

    thread_id: str
    created: bool
    history: list[tuple[str, str]]  # (role, content), oldest first, without the new message


class ThreadService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._default_projects: dict[str, str] = {}  # user id -> default project id (never changes once made)

    # -- projects --------------------------------------------------------------------------------------------------

    async def resolve_project(self, principal: Principal, raw: str | None, field: str = "project_id") -> str:
        """The given accessible project (malformed: 400 naming `field`; unknown or not accessible: 404), else the
        caller's default project."""
        if raw is None:
            return await self._default_project(principal)
        pid = canonical_uuid(raw)
        if pid is None:
            raise _bad(field, "must be a UUID")
        async with self.db.connection() as conn:
            row = await IdentityRepo(conn).accessible_project(uuid.UUID(pid), principal.user_id,
                                                              list(principal.group_ids), principal.is_admin)
        if row is None:
            raise NotFound("project not found")
        return str(row["id"])

    async def _default_project(self, principal: Principal) -> str:
        pid = self._default_projects.get(principal.user_id)
        if pid is None:
            async with self.db.transaction() as conn:
                pid = await ensure_default_project(IdentityRepo(conn), principal.user_id, principal.handle)
            if len(self._default_projects) >= DEFAULT_PROJECT_CACHE:
                self._default_projects.clear()
            self._default_projects[principal.user_id] = pid
        return pid

    async def project_identity(self, project_id: str) -> Row | None:
        async with self.db.connection() as conn:
            return await ChatRepo(conn).project_identity(project_id)

    # -- REST ------------------------------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: ThreadCreate, header_project: str | None) -> ThreadOut:
        """A new thread; being the newest, it is the active one of its (user, project) from now on."""
        title = body.title
        if title is not None:
            if len(title) > MAX_TITLE_CHARS:
                raise _bad("title", f"at most {MAX_TITLE_CHARS} characters")
            title = (await redact_async(title)).text.strip() or None
        raw_project = body.project_id if body.project_id is not None else header_project
        field = "project_id" if body.project_id is not None else "OpenAI-Project"
        project_id = await self.resolve_project(principal, raw_project, field)
        async with self.db.transaction() as conn:
            repo = ChatRepo(conn)
            await repo.lock_user_project(principal.user_id, project_id)
            row = await repo.insert_thread(principal.user_id, project_id, title)
        audit.note(resource_id=row["id"], scope_type="project", scope_id=project_id)
        return thread_out(row)

    async def list_threads(self, principal: Principal, project_id: str | None, limit: int,
                           cursor: str | None) -> ThreadList:
        pid = None
        if project_id is not None:
            pid = canonical_uuid(project_id)
            if pid is None:
                raise _bad("project_id", "must be a UUID")
        after = decode_cursor(cursor, TimeIdKey) if cursor else None
        async with self.db.connection() as conn:
            rows = await ChatRepo(conn).list_threads(principal.user_id, pid, after, limit + 1)
        return ThreadList(threads=[thread_out(r) for r in rows[:limit]], next_cursor=next_page_cursor(rows, limit))

    async def _owned(self, repo: ChatRepo, principal: Principal, thread_id: str) -> Row:
        tid = canonical_uuid(thread_id)
        row = await repo.thread(tid) if tid is not None else None
        if row is None:
            raise NotFound("thread not found")
        audit.note(resource_id=row["id"], scope_type="project", scope_id=row["project_id"])
        if row["user_id"] != principal.user_id:
            audit.deny()
            raise NotFound("thread not found")
        return row

    async def get(self, principal: Principal, thread_id: str) -> ThreadOut:
        async with self.db.connection() as conn:
            return thread_out(await self._owned(ChatRepo(conn), principal, thread_id))

    async def post_message(self, principal: Principal, thread_id: str, body: MessageCreate,
                           request_id: str) -> MessageOut:
        if body.role != "user":
            raise _bad("role", "must be user (assistant messages come only from chat completions)")
        if not body.content.strip():
            raise _bad("content", "must not be empty")
        if len(body.content.encode()) > MAX_MESSAGE_BYTES:
            raise _bad("content", "at most 1 MiB")
        red = await redact_async(body.content)
        meta: dict[str, Any] = {"request_id": request_id}
        if red.applied:
            meta["redaction_kinds"] = list(red.kinds)
        async with self.db.transaction() as conn:
            repo = ChatRepo(conn)
            thread = await self._owned(repo, principal, thread_id)
            row = await repo.append_message(thread["id"], "user", red.text, meta)
        return message_out(row)

    async def messages(self, principal: Principal, thread_id: str, limit: int, cursor: str | None) -> MessageList:
        after = decode_cursor(cursor, TimeIdKey) if cursor else None
        async with self.db.connection() as conn:
            repo = ChatRepo(conn)
            thread = await self._owned(repo, principal, thread_id)
            rows = await repo.list_messages(thread["id"], after, limit + 1)
        return MessageList(messages=[message_out(r) for r in rows[:limit]], next_cursor=next_page_cursor(rows, limit))

    # -- a chat turn's writes --------------------------------------------------------------------------------------

    async def start_turn(self, user_id: str, project_id: str, content: str, metadata: dict[str, Any],
                         history_messages: int) -> TurnStart:
        """Append the (redacted) user message to the active thread, starting one when needed; with
        `history_messages` > 0 also return up to that many earlier messages of the thread, oldest first."""
        async with self.db.connection() as conn:
            row = await ChatRepo(conn).start_turn(user_id, project_id, self.settings.chat.thread_idle_rotate_s, content,
                                                  metadata, history_messages)
        return TurnStart(thread_id=row["thread_id"], created=row["created"],
                         history=[(role, text) for role, text in row["history"]])

    async def finish_turn(self, thread_id: str, content: str, metadata: dict[str, Any]) -> None:
        """Append the (redacted) assistant message of a successful turn."""
        async with self.db.connection() as conn:
            await ChatRepo(conn).add_message(thread_id, "assistant", content, metadata)

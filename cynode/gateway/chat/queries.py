"""SQL for chat threads, their messages, the chat audit log and the project identity the PMA handoff carries."""

from __future__ import annotations

_THREAD_COLUMNS = "t.id::text AS id, t.project_id::text AS project_id, t.user_id::text AS user_id, t.title, " \
                  "t.created_at, t.updated_at"

_MESSAGE_COLUMNS = "m.id::text AS id, m.thread_id::text AS thread_id, m.role, m.content, m.metadata, m.created_at"

# Serializes get-or-create of the active thread per (user, project); released at commit (agents.md §4).
LOCK_USER_PROJECT = """
SELECT pg_advisory_xact_lock(hashtextextended(%(user_id)s::text || '/' || %(project_id)s::text, 0))
"""

INSERT_THREAD = """
INSERT INTO chat_threads (user_id, project_id, title) VALUES (%(user_id)s, %(project_id)s, %(title)s)
RETURNING id::text AS id, project_id::text AS project_id, user_id::text AS user_id, title, created_at, updated_at
"""

THREAD_BY_ID = "SELECT " + _THREAD_COLUMNS + """
FROM chat_threads t WHERE t.id = %(id)s
"""

# Newest first by creation (orchestrator.md §2); one extra row tells whether a page follows.
LIST_THREADS = "SELECT " + _THREAD_COLUMNS + """
FROM chat_threads t
WHERE t.user_id = %(user_id)s
  AND (%(project_id)s::uuid IS NULL OR t.project_id = %(project_id)s::uuid)
  AND (%(after_at)s::timestamptz IS NULL OR (t.created_at, t.id) < (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT %(limit)s
"""

# A chat turn's user message under the thread lock, with up to %(history)s earlier messages: one call of the
# function in migration 0012 (its own statement, so the lock is released when it returns).
START_TURN = """
SELECT thread_id::text AS thread_id, created, history
FROM chat_start_turn(%(user_id)s::uuid, %(project_id)s::uuid, %(idle_s)s::int, %(content)s, %(metadata)s::jsonb,
                     %(history)s::int)
"""

# Appends one message and bumps the thread, in one statement. `title` is set from a user message when the thread has
# none.
APPEND_MESSAGE = """
WITH bumped AS (
    UPDATE chat_threads SET updated_at = now(),
        title = CASE WHEN %(role)s = 'user' THEN coalesce(title, left(%(content)s, 60)) ELSE title END
    WHERE id = %(thread_id)s
)
INSERT INTO chat_messages (thread_id, role, content, metadata)
VALUES (%(thread_id)s, %(role)s, %(content)s, %(metadata)s)
RETURNING id::text AS id, thread_id::text AS thread_id, role, content, metadata, created_at
"""

# Oldest first; one extra row tells whether a page follows.
LIST_MESSAGES = "SELECT " + _MESSAGE_COLUMNS + """
FROM chat_messages m
WHERE m.thread_id = %(thread_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (m.created_at, m.id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY m.created_at, m.id
LIMIT %(limit)s
"""

PROJECT_IDENTITY = "SELECT id::text AS id, slug, display_name FROM projects WHERE id = %(id)s"

# A batch of ChatAuditRecord structs as one JSON array (db/batch.py).
AUDIT_INSERT = """
INSERT INTO chat_audit_log (created_at, user_id, project_id, model, outcome, error_code, redaction_applied,
    redaction_kinds, duration_ms, request_id, route, thread_id, stream)
SELECT to_timestamp(r.created_at), r.user_id, r.project_id, r.model, r.outcome, r.error_code,
    jsonb_array_length(r.redaction_kinds) > 0, r.redaction_kinds, r.duration_ms, r.request_id, r.route, r.thread_id,
    r.stream
FROM json_to_recordset(%s) AS r(created_at float8, user_id uuid, project_id uuid, model text, outcome text,
    error_code text, redaction_kinds jsonb, duration_ms int, request_id text, route text, thread_id uuid,
    stream boolean)
"""

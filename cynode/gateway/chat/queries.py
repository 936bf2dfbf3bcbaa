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

# A chat turn's user message, in one statement (run after LOCK_USER_PROJECT in the same transaction): the active
# thread (newest updated_at within the idle window) or a new one titled after this message, the message appended,
# the thread's updated_at bumped (a new thread already has it) and its title set if it had none.
APPEND_TO_ACTIVE_THREAD = """
WITH active AS (
    SELECT id FROM chat_threads
    WHERE user_id = %(user_id)s AND project_id = %(project_id)s
      AND updated_at > now() - make_interval(secs => %(idle_s)s)
    ORDER BY updated_at DESC, id DESC
    LIMIT 1
), created AS (
    INSERT INTO chat_threads (user_id, project_id, title)
    SELECT %(user_id)s, %(project_id)s, left(%(content)s, 60) WHERE NOT EXISTS (SELECT 1 FROM active)
    RETURNING id
), thread AS (
    SELECT id, false AS created FROM active UNION ALL SELECT id, true FROM created
), bumped AS (
    UPDATE chat_threads t SET updated_at = now(), title = coalesce(t.title, left(%(content)s, 60))
    FROM active WHERE t.id = active.id
)
INSERT INTO chat_messages (thread_id, role, content, metadata)
SELECT thread.id, 'user', %(content)s, %(metadata)s FROM thread
RETURNING id::text AS id, thread_id::text AS thread_id, (SELECT created FROM thread) AS created
"""

# The newest messages of a thread but one (the turn's own), newest first (the caller reverses them).
RECENT_MESSAGES = """
SELECT m.role, m.content FROM chat_messages m
WHERE m.thread_id = %(thread_id)s AND m.id <> %(exclude_id)s
ORDER BY m.created_at DESC, m.id DESC
LIMIT %(limit)s
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

AUDIT_COPY = """
COPY chat_audit_log (created_at, user_id, project_id, model, outcome, error_code, redaction_applied, redaction_kinds,
    duration_ms, request_id, route, thread_id, stream) FROM STDIN
"""

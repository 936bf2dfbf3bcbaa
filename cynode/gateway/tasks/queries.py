"""SQL for tasks, their first job and their attachments."""

from __future__ import annotations

_TASK_COLUMNS = """
    t.id::text AS id, t.task_name, t.status, t.closed, t.input_mode, t.project_id::text AS project_id,
    t.created_by::text AS created_by, t.created_at, t.updated_at,
    ARRAY(SELECT a.path FROM task_artifacts a WHERE a.task_id = t.id ORDER BY a.path) AS attachments
"""

TASK_BY_ID = "SELECT" + _TASK_COLUMNS + ", t.prompt FROM tasks t WHERE t.id = %(id)s"

TASKS_BY_IDS = "SELECT" + _TASK_COLUMNS + ", t.prompt FROM tasks t WHERE t.id = ANY(%(ids)s::uuid[])"

TASK_BY_NAME = ("SELECT" + _TASK_COLUMNS
                + ", t.prompt FROM tasks t WHERE t.created_by = %(user_id)s AND t.task_name = %(name)s")

# The status filter and the cursor are applied in SQL, before paging; one extra row tells whether a page follows.
LIST_TASKS = "SELECT" + _TASK_COLUMNS + """
FROM tasks t
WHERE t.created_by = %(user_id)s
  AND (%(status)s::text IS NULL OR t.status = %(status)s::text)
  AND (%(after_at)s::timestamptz IS NULL OR (t.created_at, t.id) < (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT %(limit)s
"""

TAKEN_NAMES = """
SELECT task_name FROM tasks
WHERE created_by = %(user_id)s AND (task_name = %(base)s OR task_name LIKE %(base)s || '-%%')
"""

INSERT_TASK = """
INSERT INTO tasks (id, created_by, project_id, task_name, input_mode, prompt, acceptance_criteria, metadata)
VALUES (%(id)s, %(created_by)s, %(project_id)s, %(task_name)s, %(input_mode)s, %(prompt)s, %(acceptance_criteria)s,
        %(metadata)s)
RETURNING created_at, updated_at
"""

INSERT_ARTIFACT = """
INSERT INTO task_artifacts (id, task_id, path, storage_ref, size_bytes, content_type, checksum_sha256)
VALUES (%(id)s, %(task_id)s, %(path)s, %(storage_ref)s, %(size_bytes)s, %(content_type)s, %(checksum)s)
"""

INSERT_JOB = """
INSERT INTO jobs (task_id, kind, status, payload) VALUES (%(task_id)s, %(kind)s, 'queued', %(payload)s::jsonb)
"""

JOBS_OF_TASK = """
SELECT id::text AS id, status, result, started_at, ended_at FROM jobs WHERE task_id = %(task_id)s
ORDER BY created_at, id
"""

ARTIFACTS_OF_TASK = """
SELECT id::text AS id, path, content_type, size_bytes, checksum_sha256, created_at FROM task_artifacts
WHERE task_id = %(task_id)s ORDER BY path
"""

ARTIFACT_BY_ID = """
SELECT id::text AS id, path, storage_ref, content_type, size_bytes FROM task_artifacts
WHERE id = %(id)s AND task_id = %(task_id)s
"""

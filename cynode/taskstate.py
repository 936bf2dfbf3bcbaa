"""The task and job state machine (orchestrator.md §6.4), shared by the gateway and the scheduler.

The transition tables are pure data; the async functions apply them inside the caller's transaction, holding
`SELECT ... FOR UPDATE` on the row. An illegal transition is logged and ignored (the function returns False), and
`closed` and `updated_at` always change together with `status`.

Task:  queued -> running -> completed | failed;  queued | running -> canceled | failed;  completed | failed ->
       superseded.  Closed states (completed, failed, canceled, superseded) never reopen.
Job:   queued -> running -> completed | failed | canceled | lease_expired;  queued -> canceled;
       running -> queued (a worker answered 429/503: the job goes back with node and lease cleared, §7.1).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg.types.json import Jsonb

from cynode.db.pool import Conn

log = logging.getLogger("cynode.taskstate")

TASK_STATUSES = ("queued", "running", "completed", "failed", "canceled", "superseded")
CLOSED = frozenset({"completed", "failed", "canceled", "superseded"})
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "canceled", "failed"}),
    "running": frozenset({"completed", "failed", "canceled"}),
    "completed": frozenset({"superseded"}),
    "failed": frozenset({"superseded"}),
    "canceled": frozenset(),
    "superseded": frozenset(),
}

JOB_STATUSES = ("queued", "running", "completed", "failed", "canceled", "lease_expired")
JOB_ENDED = frozenset({"completed", "failed", "canceled", "lease_expired"})
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "canceled"}),
    "running": frozenset({"completed", "failed", "canceled", "lease_expired", "queued"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
    "lease_expired": frozenset(),
}


def task_can(current: str, new: str) -> bool:
    return new in TASK_TRANSITIONS.get(current, frozenset())


def job_can(current: str, new: str) -> bool:
    return new in JOB_TRANSITIONS.get(current, frozenset())


def settled_status(task_status: str, job_statuses: list[str]) -> str | None:
    """What a task becomes once its jobs have ended, or None when it stays as it is.

    Any failed or lease_expired job fails the task; all jobs completed completes it. A canceled (or otherwise closed)
    task stays as it is, even when a late result arrives.
    """
    if task_status in CLOSED or not job_statuses:
        return None
    if any(s in ("failed", "lease_expired") for s in job_statuses):
        return "failed"
    if all(s == "completed" for s in job_statuses):
        return "completed"
    return None


# -- SQL (kept here: the state machine is the only writer of status columns) ----------------------------------------

TASK_FOR_UPDATE = "SELECT status FROM tasks WHERE id = %(id)s FOR UPDATE"
SET_TASK_STATUS = """
UPDATE tasks SET status = %(status)s, closed = %(closed)s, updated_at = now() WHERE id = %(id)s
"""
JOB_FOR_UPDATE = "SELECT status, task_id::text AS task_id FROM jobs WHERE id = %(id)s FOR UPDATE"
SET_JOB_STATUS = """
UPDATE jobs SET status = %(status)s, updated_at = now(),
    started_at = CASE WHEN %(status)s = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
    ended_at = CASE WHEN %(ended)s THEN now() ELSE ended_at END,
    node_id = CASE WHEN %(status)s = 'queued' THEN NULL ELSE node_id END,
    lease_id = CASE WHEN %(status)s = 'queued' THEN NULL ELSE lease_id END,
    lease_expires_at = CASE WHEN %(status)s = 'queued' THEN NULL ELSE lease_expires_at END,
    result = CASE WHEN %(set_result)s THEN %(result)s ELSE result END
WHERE id = %(id)s
"""
STORE_JOB_RESULT = "UPDATE jobs SET result = %(result)s, updated_at = now() WHERE id = %(id)s"
JOB_STATUSES_OF_TASK = "SELECT status FROM jobs WHERE task_id = %(id)s ORDER BY created_at, id"
CANCEL_QUEUED_JOBS = """
UPDATE jobs SET status = 'canceled', ended_at = now(), updated_at = now()
WHERE task_id = %(id)s AND status = 'queued'
"""


async def _locked_status(conn: Conn, sql: str, row_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(sql, {"id": row_id})
    return await cur.fetchone()


async def transition_task(conn: Conn, task_id: str, new_status: str) -> bool:
    """Move a task to `new_status` if the table allows it; False (logged) when illegal or the task is unknown."""
    row = await _locked_status(conn, TASK_FOR_UPDATE, task_id)
    if row is None:
        log.warning("task transition on an unknown task", extra={"task_id": task_id, "to": new_status})
        return False
    if not task_can(row["status"], new_status):
        log.warning("illegal task transition ignored",
                    extra={"task_id": task_id, "from": row["status"], "to": new_status})
        return False
    await conn.execute(SET_TASK_STATUS, {"id": task_id, "status": new_status, "closed": new_status in CLOSED})
    return True


async def transition_job(conn: Conn, job_id: str, new_status: str, *,
                         result: dict[str, Any] | None = None) -> bool:
    """Move a job to `new_status` (started_at/ended_at kept; node and lease cleared on requeue); stores `result`.

    A result for a job that can no longer change (e.g. it was canceled) is still stored, as §6.4 asks, while the
    status stays.
    """
    row = await _locked_status(conn, JOB_FOR_UPDATE, job_id)
    if row is None:
        log.warning("job transition on an unknown job", extra={"job_id": job_id, "to": new_status})
        return False
    if not job_can(row["status"], new_status):
        log.warning("illegal job transition ignored", extra={"job_id": job_id, "from": row["status"], "to": new_status})
        if result is not None:
            await conn.execute(STORE_JOB_RESULT, {"id": job_id, "result": Jsonb(result)})
        return False
    await conn.execute(SET_JOB_STATUS, {
        "id": job_id, "status": new_status, "ended": new_status in JOB_ENDED,
        "set_result": result is not None, "result": Jsonb(result) if result is not None else None,
    })
    return True


async def settle_task_from_jobs(conn: Conn, task_id: str) -> str | None:
    """After a job ended: aggregate the task's jobs into its status. Returns the new status, or None if unchanged."""
    row = await _locked_status(conn, TASK_FOR_UPDATE, task_id)
    if row is None:
        return None
    cur = await conn.execute(JOB_STATUSES_OF_TASK, {"id": task_id})
    jobs = [r["status"] for r in await cur.fetchall()]
    target = settled_status(row["status"], jobs)
    if target is None:
        return None
    if row["status"] == "queued" and target == "completed":  # a job ran without the task being marked running
        await transition_task(conn, task_id, "running")
    return target if await transition_task(conn, task_id, target) else None


# The set-based form of settle_task_from_jobs for the scheduler's batches: same table, one statement.
SETTLE_TASKS = """
UPDATE tasks t
   SET status = CASE WHEN s.any_failed THEN 'failed' ELSE 'completed' END, closed = true, updated_at = now()
  FROM (SELECT task_id, bool_or(status IN ('failed', 'lease_expired')) AS any_failed,
               bool_and(status = 'completed') AS all_done
          FROM jobs WHERE task_id = ANY(%(ids)s::uuid[]) GROUP BY task_id) s
 WHERE t.id = s.task_id AND t.status IN ('queued', 'running') AND (s.any_failed OR s.all_done)
"""


async def settle_tasks(conn: Conn, task_ids: list[str]) -> None:
    """settle_task_from_jobs for many tasks at once (settled_status's rules, in SQL)."""
    if task_ids:
        await conn.execute(SETTLE_TASKS, {"ids": task_ids})


async def cancel_task(conn: Conn, task_id: str) -> str:
    """Cancel a queued or running task and its pending jobs; returns the task's status afterwards.

    Idempotent for a canceled task; a completed, failed or superseded task is left as it is (the caller answers 409).
    A running job is left to finish; its late result is stored but the task stays canceled.
    """
    row = await _locked_status(conn, TASK_FOR_UPDATE, task_id)
    if row is None:
        raise LookupError(task_id)
    status: str = row["status"]
    if status in CLOSED:
        return status
    await conn.execute(SET_TASK_STATUS, {"id": task_id, "status": "canceled", "closed": True})
    await conn.execute(CANCEL_QUEUED_JOBS, {"id": task_id})
    return "canceled"

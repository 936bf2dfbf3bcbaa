"""The task/job state machine (orchestrator.md §6.4): the transition tables, and hypothesis-driven event sequences
run against real PostgreSQL rows through the same functions the scheduler uses."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from cynode import taskstate as ts

EXPECTED_TASK = {
    ("queued", "running"), ("running", "completed"), ("queued", "failed"), ("running", "failed"),
    ("queued", "canceled"), ("running", "canceled"), ("completed", "superseded"), ("failed", "superseded"),
}
EXPECTED_JOB = {
    ("queued", "running"), ("queued", "canceled"), ("running", "completed"), ("running", "failed"),
    ("running", "canceled"), ("running", "lease_expired"), ("running", "queued"),
}


def test_transition_tables_are_exactly_the_spec() -> None:
    task = {(a, b) for a in ts.TASK_STATUSES for b in ts.TASK_STATUSES if ts.task_can(a, b)}
    job = {(a, b) for a in ts.JOB_STATUSES for b in ts.JOB_STATUSES if ts.job_can(a, b)}
    assert task == EXPECTED_TASK and job == EXPECTED_JOB
    assert not ts.task_can("nonsense", "running") and not ts.task_can("queued", "nonsense")


@given(st.lists(st.sampled_from(ts.TASK_STATUSES), max_size=30))
def test_no_sequence_reopens_a_closed_task(targets: list[str]) -> None:
    status, was_closed = "queued", False
    for target in targets:
        if ts.task_can(status, target):
            status = target
        assert status in ts.TASK_STATUSES
        if was_closed:
            assert status in ts.CLOSED
        was_closed = status in ts.CLOSED
        if status in ("canceled", "superseded"):
            assert all(not ts.task_can(status, t) for t in ts.TASK_STATUSES)


@given(st.sampled_from(ts.TASK_STATUSES), st.lists(st.sampled_from(ts.JOB_STATUSES), max_size=4))
def test_settled_status_rules(task: str, jobs: list[str]) -> None:
    out = ts.settled_status(task, jobs)
    if task in ts.CLOSED or not jobs:
        assert out is None
    elif any(j in ("failed", "lease_expired") for j in jobs):
        assert out == "failed"
    elif all(j == "completed" for j in jobs):
        assert out == "completed"
    else:
        assert out is None


# -- against the database --------------------------------------------------------------------------------------------

Event = tuple[str, str]
EVENTS = st.one_of(
    st.tuples(st.just("task"), st.sampled_from(ts.TASK_STATUSES)),
    st.tuples(st.just("job"), st.sampled_from(ts.JOB_STATUSES)),
    st.tuples(st.just("settle"), st.just("")),
    st.tuples(st.just("cancel"), st.just("")),
)

SETUP = """
WITH u AS (INSERT INTO users (handle) VALUES (%(handle)s) RETURNING id),
p AS (INSERT INTO projects (slug, display_name) VALUES (%(handle)s, 'p') RETURNING id),
t AS (INSERT INTO tasks (created_by, project_id, task_name) SELECT u.id, p.id, 'x' FROM u, p RETURNING id)
INSERT INTO jobs (task_id, kind) SELECT id, 'sandbox' FROM t RETURNING id::text AS job_id, task_id::text AS task_id
"""


async def _run(url: str, events: list[Event], n: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
        cur = await conn.execute(SETUP, {"handle": f"u{n}"})
        ids: dict[str, Any] = await cur.fetchone()  # type: ignore[assignment]
        task, job = "queued", "queued"
        task_closed_once = False
        for kind, target in events:
            async with conn.transaction():
                if kind == "task":
                    changed = await ts.transition_task(conn, ids["task_id"], target)
                    assert changed == ts.task_can(task, target)
                    task = target if changed else task
                elif kind == "job":
                    changed = await ts.transition_job(conn, ids["job_id"], target, result={"n": n})
                    assert changed == ts.job_can(job, target)
                    job = target if changed else job
                elif kind == "settle":
                    want = ts.settled_status(task, [job])
                    got = await ts.settle_task_from_jobs(conn, ids["task_id"])
                    assert got == want
                    task = want or task
                else:
                    after = await ts.cancel_task(conn, ids["task_id"])
                    if task not in ts.CLOSED:  # a closed task is left alone, jobs included (the API answers 409)
                        task = "canceled"
                        job = "canceled" if job == "queued" else job
                    assert after == task
            cur = await conn.execute("SELECT t.status, t.closed, j.status AS job, j.ended_at, j.started_at "
                                     "FROM tasks t JOIN jobs j ON j.task_id = t.id WHERE t.id = %s",
                                     (ids["task_id"],))
            row: dict[str, Any] = await cur.fetchone()  # type: ignore[assignment]
            assert (row["status"], row["job"]) == (task, job)
            assert row["closed"] == (task in ts.CLOSED)
            if task_closed_once:
                assert row["closed"], "a closed task reopened"
            task_closed_once = row["closed"]
            assert (row["ended_at"] is not None) == (job in ts.JOB_ENDED)


@pytest.fixture
def counter() -> list[int]:
    return [0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENTS, max_size=12))
def test_event_sequences_against_the_database(db_url: str, counter: list[int], events: list[Event]) -> None:
    counter[0] += 1
    asyncio.run(_run(db_url, events, counter[0]))


async def test_late_result_on_a_canceled_job_is_stored_but_changes_nothing(database: Any) -> None:
    async with database.transaction() as conn:
        cur = await conn.execute(SETUP, {"handle": "late"})
        ids = await cur.fetchone()
        assert await ts.transition_task(conn, ids["task_id"], "running")
        assert await ts.transition_job(conn, ids["job_id"], "running")
        assert await ts.cancel_task(conn, ids["task_id"]) == "canceled"
        assert await ts.transition_job(conn, ids["job_id"], "canceled")
        assert not await ts.transition_job(conn, ids["job_id"], "completed", result={"stdout": "late"})
        assert await ts.settle_task_from_jobs(conn, ids["task_id"]) is None
        cur = await conn.execute("SELECT t.status, j.status AS job, j.result FROM tasks t JOIN jobs j "
                                 "ON j.task_id = t.id WHERE t.id = %s", (ids["task_id"],))
        row = await cur.fetchone()
    assert row == {"status": "canceled", "job": "canceled", "result": {"stdout": "late"}}


async def test_requeue_clears_node_and_lease(database: Any) -> None:
    async with database.transaction() as conn:
        cur = await conn.execute(SETUP, {"handle": "requeue"})
        ids = await cur.fetchone()
        await conn.execute("UPDATE jobs SET lease_id = gen_random_uuid(), lease_expires_at = now() WHERE id = %s",
                           (ids["job_id"],))
        assert await ts.transition_job(conn, ids["job_id"], "running")
        assert await ts.transition_job(conn, ids["job_id"], "queued")
        cur = await conn.execute("SELECT status, lease_id, lease_expires_at, node_id FROM jobs WHERE id = %s",
                                 (ids["job_id"],))
        row = await cur.fetchone()
    assert row == {"status": "queued", "lease_id": None, "lease_expires_at": None, "node_id": None}

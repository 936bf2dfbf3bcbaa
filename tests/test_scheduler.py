"""The scheduler against a real database: claims, node selection, results under leases, requeues, reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from cynode.config import Settings, load_settings
from cynode.contracts.workerapi import (
    DispatchFailed,
    DispatchLost,
    DispatchRefused,
    JobError,
    RunJobRequest,
    RunJobResponse,
    Truncated,
)
from cynode.controlplane.dispatch import WorkerDirectory
from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.scheduler import Scheduler
from cynode.db.pool import Database
from tests.support.nodes import capability, job_row, make_task, task_row


class ScriptedWorker:
    """A WorkerClient whose answers the test scripts, one per call (then it succeeds)."""

    def __init__(self, *answers: Any, delay_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls: list[RunJobRequest] = []
        self.delay_s = delay_s

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
        self.calls.append(request)
        await asyncio.sleep(self.delay_s)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
        return RunJobResponse(version=1, task_id=request.task_id, job_id=request.job_id, status="completed",
                              exit_code=0, stdout="hello\n", stderr="", started_at="s", ended_at="e",
                              truncated=Truncated())


@pytest.fixture
def sched_settings(tmp_path, db_url: str) -> Settings:
    return load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url})


async def add_node(s: Settings, db: Database, slug: str, **kw: Any) -> str:
    reg = NodeRegistry(s, db, b"k" * 40, b"j" * 40)
    node, _ = await reg.register(capability(slug, **kw))
    cfg = await reg.get_config(node.node_id)
    from cynode.contracts.node import ConfigAck

    await reg.ack(node.node_id, slug, ConfigAck(version=1, node_slug=slug, config_version=cfg.config_version,
                                                ack_at="2026-11-25T00:00:00Z", status="applied"))
    return node.node_id


def scheduler(s: Settings, db: Database, workers: dict[str, Any]) -> Scheduler:
    directory = WorkerDirectory(bearer_for=lambda node_id, version: "t")
    directory.local.update(workers)
    return Scheduler(s, db, directory)


async def test_claim_dispatch_and_complete(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    worker = ScriptedWorker()
    sch = scheduler(sched_settings, database, {"node-a": worker})
    task_id, job_id = await make_task(database, command=["sh", "-c", "echo hello"])
    claims = await sch.claim(4)
    assert [c.job_id for c in claims] == [job_id]
    assert (await task_row(database, task_id))["status"] == "running"
    job = await job_row(database, job_id)
    assert job["status"] == "running" and job["lease_id"] is not None and job["attempt"] == 1
    await sch.execute(claims[0])
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "completed" and job["result"]["stdout"] == "hello\n"
    task = await task_row(database, task_id)
    assert task["status"] == "completed" and task["closed"] is True
    assert worker.calls[0].sandbox.command == ["sh", "-c", "echo hello"]
    assert worker.calls[0].sandbox.timeout_seconds == 60


async def test_no_dispatchable_node_leaves_the_job_queued(sched_settings: Settings, database: Database) -> None:
    sch = scheduler(sched_settings, database, {})
    task_id, job_id = await make_task(database)
    assert await sch.claim(4) == []
    await add_node(sched_settings, database, "node-x", sandbox=False)
    sch.wake()
    assert await sch.claim(4) == []
    assert (await job_row(database, job_id))["status"] == "queued"
    assert (await task_row(database, task_id))["status"] == "queued"


async def test_inference_jobs_need_an_inference_node(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "plain", inference=False)
    sch = scheduler(sched_settings, database, {})
    await make_task(database, use_inference=True)
    assert await sch.claim(4) == []
    await add_node(sched_settings, database, "smart")
    sch.wake()  # the registry wakes the scheduler on every node change
    claims = await sch.claim(4)
    assert [c.node.node_slug for c in claims] == ["smart"]


async def test_selection_prefers_fewest_running_then_smallest_slug(sched_settings: Settings,
                                                                   database: Database) -> None:
    for slug in ("node-b", "node-a"):
        await add_node(sched_settings, database, slug)
    sch = scheduler(sched_settings, database, {})
    for _ in range(3):
        await make_task(database)
    claims = await sch.claim(3)
    assert [c.node.node_slug for c in claims] == ["node-a", "node-b", "node-a"]


async def test_refusal_requeues_without_costing_an_attempt(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker(DispatchRefused("busy", 0.5))})
    task_id, job_id = await make_task(database)
    [claim] = await sch.claim(1)
    await sch.execute(claim)
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "queued" and job["attempt"] == 0 and job["not_before"] is not None
    assert await sch.claim(1) == []  # backing off
    await asyncio.sleep(0.6)
    [again] = await sch.claim(1)
    await sch.execute(again)
    await sch.flush()
    assert (await task_row(database, task_id))["status"] == "completed"


async def test_lost_node_is_retried_then_fails_after_max_attempts(sched_settings: Settings,
                                                                  database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    lost = DispatchLost("connection dropped")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker(lost, lost, lost)})
    task_id, job_id = await make_task(database, max_attempts=2)
    [c1] = await sch.claim(1)
    await sch.execute(c1)
    await sch.flush()
    assert (await job_row(database, job_id))["status"] == "queued"
    async with database.connection() as conn:
        await conn.execute("UPDATE jobs SET not_before = NULL")
    [c2] = await sch.claim(1)
    await sch.execute(c2)
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "failed" and job["result"]["error"]["type"] == "dispatch_error"
    assert (await task_row(database, task_id))["status"] == "failed"


async def test_a_job_the_node_canceled_is_requeued(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    canceled = RunJobResponse(version=1, task_id="t", job_id="j", status="failed", exit_code=-1, stdout="",
                              stderr="", started_at="s", ended_at="e", error=JobError("canceled", "node stopping"))

    class Canceling(ScriptedWorker):
        async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
            self.calls.append(request)
            return canceled if len(self.calls) == 1 else await super().run_job(request, timeout_s)

    sch = scheduler(sched_settings, database, {"node-a": Canceling()})
    task_id, job_id = await make_task(database)
    [c] = await sch.claim(1)
    await sch.execute(c)
    assert (await job_row(database, job_id))["status"] == "queued"
    assert (await task_row(database, task_id))["status"] == "running"


async def test_rejected_job_fails_with_dispatch_error(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker(DispatchFailed("worker answered 400"))})
    task_id, job_id = await make_task(database)
    [c] = await sch.claim(1)
    await sch.execute(c)
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "failed" and "400" in job["result"]["error"]["message"]
    assert (await task_row(database, task_id))["closed"] is True


async def test_expired_lease_is_requeued_and_a_late_result_is_ignored(sched_settings: Settings,
                                                                     database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker()})
    task_id, job_id = await make_task(database, max_attempts=2)
    [first] = await sch.claim(1)
    async with database.connection() as conn:
        await conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    assert await sch.reconcile_leases() == 1
    assert (await job_row(database, job_id))["status"] == "queued"
    [second] = await sch.claim(1)
    assert second.lease_id != first.lease_id and second.attempt == 2
    await sch.execute(first)
    await sch.flush()  # the lost node answers late: ignored
    assert (await job_row(database, job_id))["status"] == "running"
    async with database.connection() as conn:
        await conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    assert await sch.reconcile_leases() == 1  # out of attempts now
    job = await job_row(database, job_id)
    assert job["status"] == "lease_expired"
    assert (await task_row(database, task_id))["status"] == "failed"


async def test_the_loop_drains_the_queue(sched_settings: Settings, database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker(delay_s=0.01)})
    ids = [await make_task(database) for _ in range(10)]
    await sch.start()
    try:
        sch.wake()
        for _ in range(200):
            rows = [await task_row(database, t) for t, _j in ids]
            if all(r["status"] == "completed" for r in rows):
                break
            await asyncio.sleep(0.05)
        assert all(r["status"] == "completed" for r in rows)
    finally:
        await sch.stop()


def test_result_shape_is_the_worker_response() -> None:
    r = RunJobResponse(version=1, task_id="t", job_id="j", status="completed", exit_code=0, stdout="", stderr="",
                       started_at="s", ended_at="e")
    assert msgspec.to_builtins(r)["truncated"] == {"stdout": False, "stderr": False}


async def test_prompt_jobs_are_answered_converted_or_left_queued(sched_settings: Settings, database: Database) -> None:
    from cynode.controlplane.prompts import ModelCallOutcome, PromptExecutor

    outcomes: list[ModelCallOutcome] = []

    async def model_call(ids: dict[str, Any], payload: Any) -> ModelCallOutcome:
        return outcomes.pop(0)

    directory = WorkerDirectory(bearer_for=lambda *_: "t")
    sch = Scheduler(sched_settings, database, directory, model_call=model_call)
    # no path: back to the queue
    task_id, job_id = await make_task(database, kind="model_call")
    outcomes.append(ModelCallOutcome())
    [c] = await sch.claim(1)
    assert c.node is None
    await sch.execute(c)
    job = await job_row(database, job_id)
    assert job["status"] == "queued" and job["kind"] == "model_call" and job["attempt"] == 0
    # the model answered
    async with database.connection() as conn:
        await conn.execute("UPDATE jobs SET not_before = NULL")
    outcomes.append(ModelCallOutcome(result={"version": 1, "status": "completed", "exit_code": 0, "stdout": "hi"}))
    [c] = await sch.claim(1)
    await sch.execute(c)
    await sch.flush()
    assert (await task_row(database, task_id))["status"] == "completed"
    # direct inference failed: the job becomes a sandbox model-call job for an inference node
    task2, job2 = await make_task(database, kind="model_call")
    fallback = PromptExecutor(sched_settings).sandbox_fallback("hello")
    outcomes.append(ModelCallOutcome(fallback=fallback))
    [c] = await sch.claim(1)
    await sch.execute(c)
    job = await job_row(database, job2)
    assert job["kind"] == "sandbox" and job["status"] == "queued"
    assert job["payload"]["sandbox"]["command"] == ["cynode-model-call"] and job["payload"]["sandbox"]["use_inference"]
    await add_node(sched_settings, database, "infer")
    sch.wake()
    [c] = await sch.claim(1)
    assert c.node is not None and c.node.node_slug == "infer" and c.task_id == task2


async def test_a_database_outage_during_dispatch_does_not_fail_the_job(sched_settings: Settings,
                                                                       database: Database) -> None:
    """The database dropping mid-dispatch is not the job's fault: no failure is stored, the lease stays, and
    reconcile puts the job back when it runs out. Any other error still fails the job."""
    import psycopg

    errors: list[Exception] = [psycopg.OperationalError("server closed the connection"), RuntimeError("bug")]

    async def model_call(ids: dict[str, Any], payload: Any) -> Any:
        raise errors.pop(0)

    sch = Scheduler(sched_settings, database, WorkerDirectory(bearer_for=lambda *_: "t"), model_call=model_call)
    _task, job_id = await make_task(database, kind="model_call")
    [c] = await sch.claim(1)
    await sch.execute(c)
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "running" and job["result"] is None and job["lease_id"] is not None
    async with database.connection() as conn:
        await conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    await sch.reconcile_leases()
    assert (await job_row(database, job_id))["status"] == "queued"
    [c] = await sch.claim(1)
    await sch.execute(c)
    await sch.flush()
    job = await job_row(database, job_id)
    assert job["status"] == "failed" and job["result"]["error"]["type"] == "dispatch_error"


class FirstCallSlow:
    """The first job takes `slow_s`; later ones answer at once."""

    def __init__(self, slow_s: float) -> None:
        self.slow_s = slow_s
        self.calls: list[str] = []

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
        self.calls.append(request.job_id)
        if len(self.calls) == 1:
            await asyncio.sleep(self.slow_s)
        return RunJobResponse(version=1, task_id=request.task_id, job_id=request.job_id, status="completed",
                              exit_code=0, stdout="", stderr="", started_at="s", ended_at="e", truncated=Truncated())


async def test_a_claim_waiting_behind_a_running_job_keeps_its_lease_and_runs_once(tmp_path, db_url: str,
                                                                                  database: Database) -> None:
    # One dispatcher; the second job is claimed while the first (within its own 10 s timeout) runs, and waits longer
    # than its lease (1 s timeout + 1 s grace). The lease is renewed meanwhile: reconcile takes nothing back, and the
    # job runs once.
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url,
                             "CYNODE_SCHEDULER_MAX_CONCURRENT_DISPATCH": "1", "CYNODE_SCHEDULER_LEASE_GRACE_S": "1",
                             "CYNODE_SCHEDULER_POLL_INTERVAL_MS": "50"})
    await add_node(s, database, "node-a")
    worker = FirstCallSlow(slow_s=3.0)
    sch = scheduler(s, database, {"node-a": worker})
    first = await make_task(database, timeout=10)
    second = await make_task(database, timeout=1)
    await sch.start()
    try:
        sch.wake()
        await asyncio.sleep(2.5)  # the second claim has waited past its original lease
        assert worker.calls == [first[1]]
        assert await sch.reconcile_leases() == 0
        for _ in range(100):
            if all([(await task_row(database, t))["status"] == "completed" for t in (first[0], second[0])]):
                break
            await asyncio.sleep(0.05)
        assert [(await task_row(database, t))["status"] for t in (first[0], second[0])] == ["completed"] * 2
        assert worker.calls == [first[1], second[1]]  # each job ran exactly once
    finally:
        await sch.stop()


async def test_a_claim_whose_lease_was_taken_back_while_waiting_is_not_dispatched(sched_settings: Settings,
                                                                                   database: Database) -> None:
    await add_node(sched_settings, database, "node-a")
    sch = scheduler(sched_settings, database, {"node-a": ScriptedWorker()})
    _task, job_id = await make_task(database)
    [claim] = await sch.claim(1)
    assert await sch.renew_leases([claim]) == {job_id}
    async with database.connection() as conn:  # e.g. reconciled by another orchestrator: the lease is gone
        await conn.execute("UPDATE jobs SET status = 'queued', lease_id = NULL, lease_expires_at = NULL")
    assert await sch.renew_leases([claim]) == set()

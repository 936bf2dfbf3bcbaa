"""The orchestrator and a worker as two processes over real HTTP, with real Podman containers; a worker killed with
SIGKILL mid-job, and an orchestrator killed the same way: the tasks still complete once the process is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from cynode.config import load_settings
from cynode.db.pool import Database
from tests.support.nodes import job_row, make_task, task_row
from tests.support.system import ServeProcess

pytestmark = pytest.mark.podman

PSK = "split-roles-psk-0123456789abcdef"


async def wait_closed(db: Database, task_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await task_row(db, task_id)
        if row["closed"]:
            return row
        await asyncio.sleep(0.2)
    raise TimeoutError(f"task {task_id} did not close within {timeout} s")


async def wait_job_running(db: Database, job_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await job_row(db, job_id))["status"] == "running":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("job never started")


async def test_split_orchestrator_and_worker_survive_a_killed_worker(tmp_path, db_url: str) -> None:
    orch = ServeProcess("orchestrator", name="orch", data_dir=tmp_path / "orch",
                        env={"CYNODE_DATABASE_URL": db_url, "CYNODE_NODE_REGISTRATION_PSK": PSK,
                             "CYNODE_SCHEDULER_POLL_INTERVAL_MS": "200"}).start()
    worker_env = {"CYNODE_NODE_REGISTRATION_PSK": PSK, "NODE_SLUG": "split-a",
                  "ORCHESTRATOR_URL": "", "CYNODE_WORKER_INFERENCE_MODE": "disabled"}
    worker = None
    db = Database(db_url, load_settings(None, {}).db)
    await db.pool.open(wait=True)
    try:
        orch.wait_accepting()
        worker_env["ORCHESTRATOR_URL"] = orch.url("controlplane")
        worker = ServeProcess("worker", name="worker", data_dir=tmp_path / "worker", env=worker_env).start()
        worker.wait_ready(listener="worker", timeout=120)

        task_id, job_id = await make_task(db, command=["sh", "-c", "echo split-ok; id -u"])
        done = await wait_closed(db, task_id)
        result = (await job_row(db, job_id))["result"]
        assert done["status"] == "completed", result
        assert result["stdout"] == "split-ok\n65534\n"

        # A job that outlives the worker: SIGKILL the worker while the container runs, then start it again.
        task_id, job_id = await make_task(db, command=["sh", "-c", "sleep 4; echo survived"], timeout=120)
        await wait_job_running(db, job_id)
        await asyncio.sleep(1.0)
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)
        worker = ServeProcess("worker", name="worker2", data_dir=tmp_path / "worker", env=worker_env).start()
        done = await wait_closed(db, task_id, timeout=120)
        job = await job_row(db, job_id)
        assert done["status"] == "completed", job["result"]
        assert job["result"]["stdout"] == "survived\n" and job["attempt"] >= 2
    finally:
        await db.close()
        if worker is not None:
            assert worker.stop() == 0, worker.log()[-3000:]
        assert orch.stop() == 0, orch.log()[-3000:]


async def test_a_killed_orchestrator_loses_no_accepted_work(tmp_path, db_url: str) -> None:
    """SIGKILL the orchestrator while its job runs on the worker, then accept a task while it is down: once it is back,
    both complete. The running job's answer died with the dispatch call; when its lease (job timeout + 30 s grace)
    runs out, the restarted scheduler queues it again and it runs a second time."""
    orch_env = {"CYNODE_DATABASE_URL": db_url, "CYNODE_NODE_REGISTRATION_PSK": PSK,
                "CYNODE_SCHEDULER_POLL_INTERVAL_MS": "200"}
    orch = ServeProcess("orchestrator", name="orch", data_dir=tmp_path / "orch", env=orch_env).start()
    worker = None
    db = Database(db_url, load_settings(None, {}).db)
    await db.pool.open(wait=True)
    try:
        orch.wait_accepting()
        worker = ServeProcess("worker", name="worker", data_dir=tmp_path / "worker", env={
            "CYNODE_NODE_REGISTRATION_PSK": PSK, "NODE_SLUG": "split-b", "ORCHESTRATOR_URL": orch.url("controlplane"),
            "CYNODE_WORKER_INFERENCE_MODE": "disabled"}).start()
        worker.wait_ready(listener="worker", timeout=120)
        cp_port = orch.url("controlplane").rsplit(":", 1)[1]

        running, running_job = await make_task(db, command=["sh", "-c", "sleep 3; echo outlived"], timeout=5)
        await wait_job_running(db, running_job)
        os.kill(orch.proc.pid, signal.SIGKILL)
        orch.proc.wait(10)
        queued, _ = await make_task(db, command=["sh", "-c", "echo accepted"])  # accepted while it is down
        await asyncio.sleep(4.0)  # the running job ends meanwhile; its answer has nowhere to go

        # Back on the same control-plane port, so the worker finds it again.
        orch = ServeProcess("orchestrator", name="orch2", data_dir=tmp_path / "orch", env={
            **orch_env, "CYNODE_CONTROLPLANE_LISTEN_ADDR": f"127.0.0.1:{cp_port}"}).start()
        orch.wait_accepting()
        for task_id, out in ((queued, "accepted\n"), (running, "outlived\n")):
            done = await wait_closed(db, task_id, timeout=90)
            job = await job_row(db, await db_job_id(db, task_id))
            assert done["status"] == "completed" and job["result"]["stdout"] == out, job
        assert (await job_row(db, running_job))["attempt"] == 2
    finally:
        await db.close()
        if worker is not None:
            assert worker.stop() == 0, worker.log()[-3000:]
        assert orch.stop() == 0, orch.log()[-3000:]


async def db_job_id(db: Database, task_id: str) -> str:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT id::text FROM jobs WHERE task_id = %s ORDER BY created_at DESC LIMIT 1",
                                        (task_id,))).fetchone()
    return str(row["id"])

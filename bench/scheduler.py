"""Scheduler claim+dispatch throughput with a no-op executor, beside a raw SKIP LOCKED claim loop (same database,
same number of concurrent claimers, same run)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import median, row
from cynode.config import load_settings
from cynode.contracts.node import ConfigAck
from cynode.contracts.workerapi import RunJobRequest, RunJobResponse, Truncated
from cynode.controlplane.dispatch import WorkerDirectory
from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.scheduler import Scheduler
from cynode.db import migrate
from cynode.db.pool import Database
from tests.support.nodes import capability

JOBS = 1500
ROUNDS = 3
CLAIMERS = 4  # = scheduler.max_concurrent_dispatch (its default)

RAW_CLAIM = """
UPDATE jobs SET status = 'running', lease_id = gen_random_uuid(), lease_expires_at = now() + interval '5 minutes',
       started_at = now(), attempt = attempt + 1
 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id
"""


class NoOpWorker:
    """Answers every job at once; `all_ran` is set when `expected` jobs have been answered."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ran = 0
        self.all_ran = asyncio.Event()

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
        self.ran += 1
        if self.ran >= self.expected:
            self.all_ran.set()
        return RunJobResponse(version=1, task_id=request.task_id, job_id=request.job_id, status="completed",
                              exit_code=0, stdout="", stderr="", started_at="s", ended_at="e", truncated=Truncated())


async def _fill(db: Database, n: int) -> None:
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM jobs; DELETE FROM tasks")
        user = await (await conn.execute(
            "INSERT INTO users (handle) VALUES ('bench') ON CONFLICT (handle) DO UPDATE SET handle = 'bench' "
            "RETURNING id")).fetchone()
        proj = await (await conn.execute(
            "INSERT INTO projects (slug, display_name) VALUES ('bench-' || gen_random_uuid(), 'b') RETURNING id"
        )).fetchone()
        await conn.execute("""
            WITH t AS (
                INSERT INTO tasks (created_by, project_id, task_name, input_mode)
                SELECT %(u)s, %(p)s, 'bench-' || g, 'commands' FROM generate_series(1, %(n)s) g RETURNING id)
            INSERT INTO jobs (task_id, kind, payload)
            SELECT id, 'sandbox', '{"version":1,"kind":"sandbox","sandbox":{"command":["true"],"timeout_seconds":60}}'
              FROM t""", {"u": user["id"], "p": proj["id"], "n": n})
    async with db.connection() as conn:  # fresh statistics, as autovacuum would give a long-running database
        await conn.execute("ANALYZE jobs; ANALYZE tasks")


async def _raw(db: Database) -> float:
    await _fill(db, JOBS)

    async def claimer() -> None:
        while True:
            async with db.connection() as conn:
                if await (await conn.execute(RAW_CLAIM)).fetchone() is None:
                    return

    t0 = time.perf_counter()
    await asyncio.gather(*(claimer() for _ in range(CLAIMERS)))
    return JOBS / (time.perf_counter() - t0)


async def _scheduler(db: Database, settings) -> float:
    await _fill(db, JOBS)
    directory = WorkerDirectory(bearer_for=lambda *_: "t")
    worker = directory.local["bench-node"] = NoOpWorker(JOBS)
    sch = Scheduler(settings, db, directory)
    t0 = time.perf_counter()
    await sch.start()
    sch.wake()
    await worker.all_ran.wait()
    await sch.flush()  # every result stored and every task settled (one statement per batch)
    elapsed = time.perf_counter() - t0
    await sch.stop()
    async with db.connection() as conn:  # checked after the clock stopped, so the check adds no load to the run
        left = (await (await conn.execute("SELECT count(*) AS n FROM tasks WHERE NOT closed")).fetchone())["n"]
    if left:
        raise RuntimeError(f"{left} tasks still open after the scheduler run")
    return JOBS / elapsed


async def _main(url: str, data: Path) -> None:
    settings = load_settings(None, {"CYNODE_DATA_DIR": str(data), "CYNODE_LOGGING_LEVEL": "warning"})
    db = Database(url, settings.db)
    await db.pool.open(wait=True)
    try:
        reg = NodeRegistry(settings, db, b"k" * 40, b"j" * 40)
        node, _ = await reg.register(capability("bench-node"))
        cfg = await reg.get_config(node.node_id)
        await reg.ack(node.node_id, "bench-node", ConfigAck(
            version=1, node_slug="bench-node", config_version=cfg.config_version, ack_at="2026-01-01T00:00:00Z",
            status="applied"))
        raws, scheds = [], []
        for _ in range(ROUNDS):  # alternate, so both see the same machine load; report medians
            raws.append(await _raw(db))
            scheds.append(await _scheduler(db, settings))
    finally:
        await db.close()
    row(f"raw SKIP LOCKED claim loop ({CLAIMERS} claimers, median of {ROUNDS})", median(raws), "jobs/s")
    row(f"scheduler claim+dispatch+result, no-op worker ({JOBS} jobs)", median(scheds), "jobs/s",
        baseline=median(raws), goal="ratio >= 0.5")


def run() -> None:
    import logging

    import pgserver

    logging.getLogger().setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="cynode-bench-sched-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    try:
        url = str(server.get_uri())
        migrate.migrate(url)
        asyncio.run(_main(url, tmp))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

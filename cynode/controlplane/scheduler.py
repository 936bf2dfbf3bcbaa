"""The scheduler: the database is the queue (orchestrator.md §7.1).

Each pass claims queued jobs with `FOR UPDATE SKIP LOCKED`, assigns each to a dispatchable node (fewest running jobs,
then the smallest slug), marks job and task running under a fresh lease, and dispatches outside the transaction.
Results are stored only under the lease they were dispatched with, so a late answer from a lost node never
overwrites a re-dispatched job. Expired leases go back to the queue until `max_attempts`, so no task is lost when
a worker or the orchestrator dies mid-way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from cynode.config import Settings
from cynode.contracts.jobs import JobPayload
from cynode.contracts.workerapi import (
    DispatchFailed,
    DispatchLost,
    DispatchRefused,
    InputFile,
    RunJobRequest,
    RunJobResponse,
    SandboxSpec,
)
from cynode.controlplane import queries as q
from cynode.controlplane.dispatch import WorkerDirectory
from cynode.db.pool import Database, log_failure, unavailable
from cynode.taskstate import settle_tasks

log = logging.getLogger("cynode.controlplane.scheduler")

ReadArtifact = Callable[[str, str], Awaitable[tuple[str, bytes]]]  # (task_id, artifact_id) -> (name, content)
NODES_TTL_S = 0.5
CLAIMERS = 4  # concurrent claim transactions filling the backlog
# Claimed jobs held ready per dispatch slot: bigger claim batches, fewer claim transactions per job. Safe to hold
# because waiting claims renew their leases (_lease_keeper); on a crash they are requeued when those leases expire.
BACKLOG_PER_SLOT = 4
ModelCall = Callable[[dict[str, Any], JobPayload], Awaitable[Any]]  # -> prompts.ModelCallOutcome


@dataclass
class NodeSlot:
    node_id: str
    node_slug: str
    base_url: str
    config_version: str
    running: int
    sandbox_ok: bool
    inference_ok: bool


@dataclass
class Claim:
    job_id: str
    task_id: str
    kind: str
    payload: JobPayload
    attempt: int
    max_attempts: int
    lease_id: str
    node: NodeSlot | None = None
    lease_s: float = 0.0
    dropped: bool = False  # its lease was taken back while it waited (canceled, reconciled): never dispatched


def node_slots(rows: list[dict[str, Any]]) -> list[NodeSlot]:
    return [NodeSlot(node_id=str(r["id"]), node_slug=r["node_slug"], base_url=r["worker_api_target_url"],
                     config_version=r["config_version"], running=int(r["running"]), sandbox_ok=r["sandbox_ok"],
                     inference_ok=r["inference_ok"]) for r in rows]


def pick_node(slots: list[NodeSlot], *, use_inference: bool) -> NodeSlot | None:
    """P1 selection: fewest running jobs, ties broken by the smallest slug; inference jobs need an inference node."""
    fits = [s for s in slots if s.sandbox_ok and (s.inference_ok or not use_inference)]
    return min(fits, key=lambda s: (s.running, s.node_slug), default=None)


def failure_result(job_id: str, task_id: str, kind: str, message: str) -> dict[str, Any]:
    return {"version": 1, "task_id": task_id, "job_id": job_id, "status": "failed", "exit_code": -1,
            "stdout": "", "stderr": "", "error": {"type": kind, "message": message}}


class Scheduler:
    def __init__(self, settings: Settings, db: Database, workers: WorkerDirectory, *,
                 read_artifact: ReadArtifact | None = None, model_call: ModelCall | None = None) -> None:
        self.settings = settings
        self.db = db
        self.workers = workers
        self.read_artifact = read_artifact
        self.model_call = model_call  # prompt-mode executor (inference issue); None leaves model_call jobs queued
        cfg = settings.scheduler
        self.poll_s = cfg.poll_interval_ms / 1000
        self.max_inflight = cfg.max_concurrent_dispatch
        self.lease_grace_s = cfg.lease_grace_s
        self.stale_s = 3 * settings.worker.capability_report_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._node_cache: tuple[float, list[NodeSlot]] | None = None
        self._backlog: asyncio.Queue[Claim] = asyncio.Queue(maxsize=BACKLOG_PER_SLOT * self.max_inflight)
        self._room = asyncio.Event()
        self._waiting: dict[str, Claim] = {}  # claimed, not yet taken by a dispatcher (their leases are renewed)
        self._results: asyncio.Queue[tuple[Claim, dict[str, Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._node_cache = None  # nodes may have changed (registration, ack, report)
        self._wake.set()

    async def start(self) -> None:
        await self.reconcile_leases()
        # Claimers fill a backlog of claimed jobs (in parallel, as concurrent SKIP LOCKED claimers do);
        # max_concurrent_dispatch dispatchers take from it, so at most that many worker calls are in flight.
        self._tasks = [asyncio.create_task(self._claimer(), name=f"scheduler-claim-{i}") for i in range(CLAIMERS)]
        self._tasks += [asyncio.create_task(self._dispatcher(), name=f"scheduler-dispatch-{i}")
                        for i in range(self.max_inflight)]
        self._tasks.append(asyncio.create_task(self._reconciler(), name="scheduler-reconcile"))
        self._tasks.append(asyncio.create_task(self._lease_keeper(), name="scheduler-leases"))

    async def stop(self, grace_s: float = 25.0) -> None:
        """Stop claiming; let in-flight dispatches finish for a while, then leave them to their leases."""
        self._stopping = True
        self._wake.set()
        self._stopped.set()
        _done, pending = await asyncio.wait(self._tasks, timeout=grace_s) if self._tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._backlog.empty():  # claimed but never dispatched: straight back to the queue
            claim = self._backlog.get_nowait()
            self._waiting.pop(claim.job_id, None)
            await self._requeue(claim, refund=1, backoff_s=0)
        await self.flush()

    async def _claimer(self) -> None:
        while not self._stopping:
            self._wake.clear()
            room = self._backlog.maxsize - self._backlog.qsize()
            claims: list[Claim] = []
            if room > 0:
                try:
                    claims = await self.claim(room)
                except Exception as e:
                    log_failure(log, "claim failed; retrying", e)
            for c in claims:
                self._waiting[c.job_id] = c
                await self._backlog.put(c)
            if claims:
                continue  # more may be waiting
            if room > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
            else:
                await self._room.wait()
                self._room.clear()

    async def _dispatcher(self) -> None:
        while not self._stopping:
            get = asyncio.ensure_future(self._backlog.get())
            stop = asyncio.ensure_future(self._stopped.wait())
            await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not get.done():
                get.cancel()
                return
            self._room.set()
            claim = get.result()
            self._waiting.pop(claim.job_id, None)
            if claim.dropped:
                log.warning("claimed job lost its lease while waiting; not dispatched", extra={"job_id": claim.job_id})
                continue
            await self.execute(claim)

    async def _lease_keeper(self) -> None:
        """Claims can wait in the backlog behind running jobs; their leases are renewed well before they run out,
        so a job is never requeued (and run twice) because it waited for a dispatcher."""
        every = max(0.1, self.lease_grace_s / 3)
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), every)
            waiting = list(self._waiting.values())
            if not waiting or self._stopping:
                continue
            try:
                held = await self.renew_leases(waiting)
            except Exception as e:
                log_failure(log, "lease renewal failed; retrying", e)
                continue
            for c in waiting:
                if c.job_id not in held:
                    c.dropped = True

    async def renew_leases(self, claims: list[Claim]) -> set[str]:
        """Renew the leases of `claims`; returns the job ids whose lease is still held."""
        async with self.db.connection() as conn:
            rows = await (await conn.execute(q.RENEW_LEASES, {
                "ids": [c.job_id for c in claims], "leases": [c.lease_id for c in claims],
                "lease_s": [c.lease_s for c in claims]})).fetchall()
        return {r["id"] for r in rows}

    async def _reconciler(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), max(self.poll_s, 5.0))
            try:
                await self.reconcile_leases()
            except Exception as e:
                log_failure(log, "lease reconcile failed", e)

    # -- claim ----------------------------------------------------------------------------------------------------

    async def _nodes(self) -> list[NodeSlot]:
        """Dispatchable nodes, re-read at most every NODES_TTL_S; claims in between count their own jobs, so
        concurrent claimers still spread work by the fewest-running rule."""
        now = time.monotonic()
        if self._node_cache is None or now - self._node_cache[0] > NODES_TTL_S:
            async with self.db.connection() as conn:
                rows = await (await conn.execute(q.DISPATCHABLE_NODES, {"stale_s": self.stale_s})).fetchall()
            self._node_cache = (now, node_slots(rows))
        return self._node_cache[1]

    def claimable_kinds(self) -> list[str]:
        return ["sandbox", "model_call"] if self.model_call else ["sandbox"]

    async def claim(self, limit: int) -> list[Claim]:
        claims: list[Claim] = []
        slots = await self._nodes()
        # Pipelined: BEGIN and the SELECT, then the UPDATE and COMMIT travel together (two round trips).
        async with self.db.connection() as conn, conn.pipeline(), conn.transaction():
            jobs = await (await conn.execute(q.CLAIMABLE_JOBS, {"kinds": self.claimable_kinds(),
                                                                "limit": limit + 4})).fetchall()
            if not jobs:
                return []
            for job in jobs:
                if len(claims) >= limit:
                    break
                payload = msgspec.convert(job["payload"], JobPayload)
                claim = Claim(job_id=str(job["id"]), task_id=str(job["task_id"]), kind=job["kind"], payload=payload,
                              attempt=job["attempt"] + 1, max_attempts=job["max_attempts"],
                              lease_id=str(uuid.uuid4()))
                if job["kind"] == "sandbox":
                    assert payload.sandbox is not None
                    node = pick_node(slots, use_inference=payload.sandbox.use_inference)
                    if node is None:
                        continue  # stays queued until a node qualifies
                    node.running += 1
                    claim.node = node
                    claim.lease_s = payload.sandbox.timeout_seconds + self.lease_grace_s
                else:
                    claim.lease_s = self.settings.inference.request_timeout_s * 3 + self.lease_grace_s
                claims.append(claim)
            if claims:
                await conn.execute(q.MARK_JOBS_RUNNING, {
                    "ids": [c.job_id for c in claims], "leases": [c.lease_id for c in claims],
                    "lease_s": [c.lease_s for c in claims],
                    "nodes": [c.node.node_id if c.node else None for c in claims]})
        return claims

    # -- dispatch -------------------------------------------------------------------------------------------------

    async def execute(self, claim: Claim) -> None:
        try:
            if claim.kind == "model_call":
                assert self.model_call is not None
                outcome = await self.model_call({"job_id": claim.job_id, "task_id": claim.task_id}, claim.payload)
                if outcome.result is not None:
                    await self._store(claim, outcome.result)
                elif outcome.fallback is not None:  # Option A: run the fixed model-call script in a sandbox
                    await self._convert(claim, outcome.fallback)
                else:  # no inference path right now: back to the queue
                    await self._requeue(claim, refund=1, backoff_s=5.0)
                return
            await self._dispatch(claim)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if unavailable(e):  # not the job's fault: its lease runs out and reconcile puts it back in the queue
                log_failure(log, "dispatch interrupted", e, job_id=claim.job_id)
                return
            log.exception("dispatch failed unexpectedly", extra={"job_id": claim.job_id})
            await self._store(claim, failure_result(claim.job_id, claim.task_id, "dispatch_error",
                                                    f"internal error: {type(e).__name__}"))

    async def _dispatch(self, claim: Claim) -> None:
        node = claim.node
        assert node is not None and claim.payload.sandbox is not None
        sb = claim.payload.sandbox
        request = RunJobRequest(version=1, task_id=claim.task_id, job_id=claim.job_id, sandbox=SandboxSpec(
            command=sb.command, image=sb.image, env=sb.env, timeout_seconds=sb.timeout_seconds,
            network_policy="restricted", use_inference=sb.use_inference,
            input_files=await self._input_files(claim) or None,
        ))
        client = self.workers.client(node.node_slug, node.node_id, node.base_url, node.config_version)
        log.info("dispatching job", extra={"job_id": claim.job_id, "task_id": claim.task_id,
                                           "node_slug": node.node_slug, "attempt": claim.attempt})
        try:
            result = await client.run_job(request, timeout_s=sb.timeout_seconds + 30)
        except DispatchRefused as e:
            log.info("node refused the job; requeued", extra={"job_id": claim.job_id, "reason": str(e)})
            await self._requeue(claim, refund=1, backoff_s=e.retry_after_s)
            return
        except DispatchLost as e:
            if claim.attempt < claim.max_attempts:
                log.warning("node lost mid-dispatch; requeued", extra={"job_id": claim.job_id, "reason": str(e)})
                await self._requeue(claim, refund=0, backoff_s=2.0)
            else:
                await self._store(claim, failure_result(claim.job_id, claim.task_id, "dispatch_error", str(e)))
            return
        except DispatchFailed as e:
            await self._store(claim, failure_result(claim.job_id, claim.task_id, "dispatch_error", str(e)))
            return
        if result.error is not None and result.error.type == "canceled" and claim.attempt < claim.max_attempts:
            # The node stopped the job (it is shutting down, or its jobs were stopped): not the job's fault.
            log.warning("node canceled the job; requeued", extra={"job_id": claim.job_id})
            await self._requeue(claim, refund=0, backoff_s=2.0)
            return
        await self._store(claim, msgspec.to_builtins(result))

    async def _input_files(self, claim: Claim) -> list[InputFile]:
        sb = claim.payload.sandbox
        files = [InputFile(name=name, content_base64=base64.b64encode(text.encode()).decode())
                 for name, text in ((sb.inline_files or {}).items() if sb else [])]
        refs = sb.input_files if sb else None
        if not refs or self.read_artifact is None:
            return files
        for ref in refs:
            _name, content = await self.read_artifact(claim.task_id, ref.artifact_id)
            files.append(InputFile(name=ref.name, content_base64=base64.b64encode(content).decode()))
        return files

    async def _store(self, claim: Claim, result: dict[str, Any] | RunJobResponse) -> None:
        """Hand the result to the writer, which stores results that finish together in one transaction. The slot
        does not wait for it (so the next claim overlaps the write); `flush()` waits for everything queued."""
        doc = msgspec.to_builtins(result) if isinstance(result, RunJobResponse) else result
        self._results.put_nowait((claim, doc))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_results(), name="scheduler-results")

    async def flush(self) -> None:
        while self._writer is not None and not self._writer.done():
            await self._writer

    async def _write_results(self) -> None:
        while not self._results.empty():
            batch = [self._results.get_nowait() for _ in range(min(self._results.qsize(), 256))]
            try:
                await self._store_batch(batch)
            except Exception as e:  # the leases stay held; reconcile requeues these jobs when they expire
                log_failure(log, "storing job results failed", e, jobs=[c.job_id for c, _d in batch])

    async def _store_batch(self, batch: list[tuple[Claim, dict[str, Any]]]) -> None:
        statuses = ["completed" if d.get("status") == "completed" else "failed" for _c, d in batch]
        async with self.db.connection() as conn:
            rows = await (await conn.execute(q.STORE_RESULTS, {
                "ids": [c.job_id for c, _d in batch], "leases": [c.lease_id for c, _d in batch],
                "statuses": statuses, "results": [Jsonb(d) for _c, d in batch]})).fetchall()
        stored = {str(r["id"]) for r in rows}
        for (claim, doc), status in zip(batch, statuses, strict=True):
            if claim.job_id in stored:
                log.info("job finished", extra={"job_id": claim.job_id, "task_id": claim.task_id, "status": status,
                                                "exit_code": doc.get("exit_code")})
            else:
                log.warning("late result ignored (lease no longer held)", extra={"job_id": claim.job_id})

    async def _convert(self, claim: Claim, payload: JobPayload) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(q.CONVERT_TO_SANDBOX, {"job_id": claim.job_id, "lease_id": claim.lease_id,
                                                      "payload": Jsonb(msgspec.to_builtins(payload))})
        self.wake()

    async def _requeue(self, claim: Claim, *, refund: int, backoff_s: float) -> None:
        # The task stays `running` (the lifecycle has no way back to queued); its job waits for the next claim.
        async with self.db.transaction() as conn:
            await conn.execute(q.REQUEUE_JOB, {"job_id": claim.job_id, "lease_id": claim.lease_id,
                                               "refund": refund, "backoff_s": backoff_s})

    # -- leases ---------------------------------------------------------------------------------------------------

    async def reconcile_leases(self) -> int:
        """Expired leases: back to the queue while attempts remain, else `lease_expired` and the task fails."""
        async with self.db.transaction() as conn:
            rows = await (await conn.execute(q.EXPIRED_LEASES)).fetchall()
            await settle_tasks(conn, [str(r["task_id"]) for r in rows if r["status"] == "lease_expired"])
        if rows:
            log.warning("expired job leases reconciled", extra={"jobs": [str(r["id"]) for r in rows]})
            self.wake()
        return len(rows)

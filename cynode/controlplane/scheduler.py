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
from dataclasses import dataclass, field
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
from cynode.db.pool import Database
from cynode.taskstate import settle_task_from_jobs, transition_task

log = logging.getLogger("cynode.controlplane.scheduler")

ReadArtifact = Callable[[str, str], Awaitable[tuple[str, bytes]]]  # (task_id, artifact_id) -> (name, content)
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
    extra: dict[str, Any] = field(default_factory=dict)


def node_slots(rows: list[dict[str, Any]]) -> list[NodeSlot]:
    slots = []
    for r in rows:
        cap = r["capability_snapshot"] or {}
        inf = cap.get("inference") or {}
        slots.append(NodeSlot(
            node_id=str(r["id"]), node_slug=r["node_slug"], base_url=r["worker_api_target_url"],
            config_version=r["config_version"], running=int(r["running"]),
            sandbox_ok=bool((cap.get("sandbox") or {}).get("supported")),
            inference_ok=bool(inf.get("running")) and bool(inf.get("supported") or inf.get("existing_service")),
        ))
    return slots


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
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_reconcile = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.reconcile_leases()
        self._loop_task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self, grace_s: float = 25.0) -> None:
        """Stop claiming; let in-flight dispatches finish for a while, then leave them to their leases."""
        self._stopping = True
        self._wake.set()
        if self._loop_task:
            await self._loop_task
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if time.monotonic() - self._last_reconcile > max(self.poll_s, 5.0):
                    await self.reconcile_leases()
                free = self.max_inflight - len(self._inflight)
                claims = await self.claim(free) if free > 0 else []
                for c in claims:
                    task = asyncio.create_task(self.execute(c), name=f"dispatch-{c.job_id}")
                    self._inflight.add(task)
                    task.add_done_callback(self._dispatch_done)
                if claims and len(self._inflight) < self.max_inflight:
                    continue  # more may be waiting
            except Exception:
                log.exception("scheduler pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    def _dispatch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not self._stopping:
            self._wake.set()  # a slot is free

    # -- claim ----------------------------------------------------------------------------------------------------

    def claimable_kinds(self) -> list[str]:
        return ["sandbox", "model_call"] if self.model_call else ["sandbox"]

    async def claim(self, limit: int) -> list[Claim]:
        claims: list[Claim] = []
        async with self.db.transaction() as conn:
            jobs = await (await conn.execute(q.CLAIMABLE_JOBS, {"kinds": self.claimable_kinds(),
                                                                "limit": limit * 4})).fetchall()
            if not jobs:
                return []
            slots = node_slots(await (await conn.execute(q.DISPATCHABLE_NODES, {"stale_s": self.stale_s})).fetchall())
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
                    lease_s = payload.sandbox.timeout_seconds + self.lease_grace_s
                else:
                    lease_s = self.settings.inference.request_timeout_s * 3 + self.lease_grace_s
                await conn.execute(q.MARK_JOB_RUNNING, {"job_id": claim.job_id, "lease_id": claim.lease_id,
                                                        "node_id": claim.node.node_id if claim.node else None,
                                                        "lease_s": lease_s})
                await transition_task(conn, claim.task_id, "running")
                claims.append(claim)
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
        doc = msgspec.to_builtins(result) if isinstance(result, RunJobResponse) else result
        status = "completed" if doc.get("status") == "completed" else "failed"
        async with self.db.transaction() as conn:
            row = await (await conn.execute(q.STORE_RESULT, {"job_id": claim.job_id, "lease_id": claim.lease_id,
                                                             "status": status, "result": Jsonb(doc)})).fetchone()
            if row is None:
                log.warning("late result ignored (lease no longer held)", extra={"job_id": claim.job_id})
                return
            await settle_task_from_jobs(conn, claim.task_id)
        log.info("job finished", extra={"job_id": claim.job_id, "task_id": claim.task_id, "status": status,
                                        "exit_code": doc.get("exit_code")})

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
        self._last_reconcile = time.monotonic()
        async with self.db.transaction() as conn:
            rows = await (await conn.execute(q.EXPIRED_LEASES)).fetchall()
            for r in rows:
                if r["status"] == "lease_expired":
                    await settle_task_from_jobs(conn, str(r["task_id"]))
        if rows:
            log.warning("expired job leases reconciled", extra={"jobs": [str(r["id"]) for r in rows]})
            self.wake()
        return len(rows)

"""Builders for node payloads and rows used by control-plane, worker and scheduler tests."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from cynode.contracts.node import CapabilityReport
from cynode.db.pool import Database


def capability(slug: str = "node-a", *, base_url: str = "http://127.0.0.1:12090", inference: bool = True,
               running: bool = True, sandbox: bool = True, labels: list[str] | None = None,
               existing: bool = False, version: int = 1, models: list[dict[str, Any]] | None = None,
               **extra: Any) -> CapabilityReport:
    doc: dict[str, Any] = {
        "version": version, "reported_at": "2026-11-25T00:00:00Z",
        "node": {"node_slug": slug, **({"labels": labels} if labels else {})},
        "platform": {"os": "linux", "arch": "amd64"},
        "compute": {"cpu_cores": 2, "ram_mb": 1024},
        "worker_api": {"base_url": base_url},
        "sandbox": {"supported": sandbox},
        "inference": {"supported": inference, "mode": "allow", "existing_service": existing, "running": running,
                      **({"models": models} if models else {})},
        **extra,
    }
    return msgspec.convert(doc, CapabilityReport)


async def make_task(db: Database, *, kind: str = "sandbox", command: list[str] | None = None,
                    use_inference: bool = False, timeout: int = 60, max_attempts: int = 3,
                    handle: str | None = None) -> tuple[str, str]:
    """Insert a user (if needed), project, task and its first job directly; returns (task_id, job_id)."""
    handle = handle or "u" + uuid.uuid4().hex[:8]
    payload: dict[str, Any] = {"version": 1, "kind": kind}
    if kind == "sandbox":
        payload["sandbox"] = {"command": command or ["sh", "-c", "echo hi"], "timeout_seconds": timeout,
                              "use_inference": use_inference}
    else:
        payload["prompt"] = "hello"
    async with db.transaction() as conn:
        user = await (await conn.execute(
            "INSERT INTO users (handle) VALUES (%s) ON CONFLICT (handle) DO UPDATE SET handle = EXCLUDED.handle "
            "RETURNING id", (handle,))).fetchone()
        project = await (await conn.execute(
            "INSERT INTO projects (slug, display_name) VALUES (%s, 'p') RETURNING id",
            ("p-" + uuid.uuid4().hex,))).fetchone()
        task = await (await conn.execute(
            "INSERT INTO tasks (created_by, project_id, task_name, input_mode) VALUES (%s, %s, %s, %s) RETURNING id",
            (user["id"], project["id"], "t-" + uuid.uuid4().hex[:10], "prompt" if kind == "model_call" else "commands"),
        )).fetchone()
        job = await (await conn.execute(
            "INSERT INTO jobs (task_id, kind, payload, max_attempts) VALUES (%s, %s, %s, %s) RETURNING id",
            (task["id"], kind, msgspec.json.encode(payload).decode(), max_attempts))).fetchone()
    return str(task["id"]), str(job["id"])


async def task_row(db: Database, task_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,))).fetchone()
    assert row is not None
    return row


async def job_row(db: Database, job_id: str) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))).fetchone()
    assert row is not None
    return row

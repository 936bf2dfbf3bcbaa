"""Task use cases: create (one transaction: task, artifacts, first job, audit row), reads, cancel, attachments.

Access: a task is visible to its creator and to system admins; anyone else gets 404, so ids cannot be probed
(orchestrator.md §4). Creation is always asynchronous: the task is `queued` and the scheduler is woken after commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from cynode import taskstate
from cynode.auth.principal import Principal
from cynode.auth.projects import resolve_project
from cynode.auth.store import IdentityRepo
from cynode.config import Settings
from cynode.contracts.jobs import JobInputRef, JobPayload, SandboxPayload
from cynode.contracts.tasks import (
    ArtifactList,
    ArtifactOut,
    JobOut,
    TaskCanceled,
    TaskCreate,
    TaskList,
    TaskLogs,
    TaskOut,
    TaskResult,
)
from cynode.db.coalesce import Coalescer
from cynode.db.pool import Conn, Database
from cynode.errors import Conflict, FieldError, Invalid, NotFound
from cynode.gateway import audit
from cynode.gateway.artifacts import ArtifactStore
from cynode.gateway.tasks import queries as q
from cynode.gateway.tasks.names import auto_name, explicit_name, is_name, unique_name
from cynode.gateway.tasks.upload import IncomingFile, read_multipart
from cynode.gateway.timefmt import rfc3339, rfc3339_opt
from cynode.gateway.validation import decode_body
from cynode.http.pagination import TimeIdKey, decode_cursor, next_page_cursor
from cynode.ids import canonical_uuid

log = logging.getLogger("cynode.gateway.tasks")

KiB, MiB = 1024, 1024 * 1024
MAX_PROMPT_BYTES = 1 * MiB
MAX_SCRIPT_BYTES = 256 * KiB
MAX_COMMANDS = 64
MAX_COMMANDS_BYTES = 64 * KiB
INPUT_MODES = ("prompt", "script", "commands")
STREAMS = ("stdout", "stderr", "all")

Row = dict[str, Any]

def _bad(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", [FieldError(field, message)])


@dataclass(frozen=True)
class TaskSpec:
    """A validated create request."""

    input_mode: str
    prompt: str | None
    commands: list[str] | None
    base_name: str
    project_id: str | None
    use_inference: bool
    acceptance_criteria: list[str] | None


def validate(req: TaskCreate) -> TaskSpec:
    """Every field rule of orchestrator.md §6.2 and §6.5; a prompt is never turned into a shell command."""
    mode = req.input_mode or "prompt"
    if mode not in INPUT_MODES:
        raise _bad("input_mode", "must be prompt, script or commands")
    prompt = req.prompt
    if prompt is not None and not prompt.strip():
        raise _bad("prompt", "must not be empty")
    commands = req.commands
    if commands is not None:
        if mode != "commands":
            raise _bad("commands", "only allowed with input_mode=commands")
        if not 1 <= len(commands) <= MAX_COMMANDS:
            raise _bad("commands", f"give 1 to {MAX_COMMANDS} commands")
        if any(not c.strip() for c in commands):
            raise _bad("commands", "commands must not be empty")
        if sum(len(c.encode()) for c in commands) > MAX_COMMANDS_BYTES:
            raise _bad("commands", "at most 64 KiB in total")
    elif prompt is None:
        raise _bad("prompt", "required")
    if prompt is not None:
        limit = MAX_PROMPT_BYTES if mode == "prompt" else MAX_SCRIPT_BYTES
        if len(prompt.encode()) > limit:
            raise _bad("prompt", f"at most {limit // KiB} KiB in {mode} mode")
    if req.task_name is not None:
        base = explicit_name(req.task_name)
    else:
        base = auto_name(commands[0] if commands else prompt or "")
    return TaskSpec(input_mode=mode, prompt=prompt, commands=commands, base_name=base, project_id=req.project_id,
                    use_inference=bool(req.use_inference) if mode != "prompt" else True,
                    acceptance_criteria=req.acceptance_criteria)


def model_input(prompt: str, files: list[IncomingFile]) -> str:
    """The prompt with UTF-8 attachments of at most 256 KiB appended under their names; others listed by name."""
    parts = [prompt]
    for f in files:
        if f.text is not None:
            parts.append(f"\n\n--- attachment: {f.name} ---\n{f.text}")
    others = [f.name for f in files if f.text is None]
    if others:
        parts.append("\n\nAttachments not included as text (binary or over 256 KiB): " + ", ".join(others))
    return "".join(parts)


def job_payload(spec: TaskSpec, files: list[IncomingFile], artifact_ids: list[str],
                settings: Settings) -> tuple[str, JobPayload]:
    if spec.input_mode == "prompt":
        assert spec.prompt is not None
        return "model_call", JobPayload(version=1, kind="model_call", prompt=model_input(spec.prompt, files))
    if spec.input_mode == "script":
        assert spec.prompt is not None
        command = ["sh", "-c", spec.prompt]
    else:
        lines = spec.commands if spec.commands is not None else [spec.prompt or ""]
        command = ["sh", "-c", "set -e\n" + "\n".join(lines)]
    inputs = [JobInputRef(name=f.name, artifact_id=a) for f, a in zip(files, artifact_ids, strict=True)]
    sandbox = SandboxPayload(command=command, timeout_seconds=settings.sandbox.default_timeout_s,
                             image=settings.sandbox.default_image, use_inference=spec.use_inference,
                             input_files=inputs or None)
    return "sandbox", JobPayload(version=1, kind="sandbox", sandbox=sandbox)


def task_out(row: Row, *, with_prompt: bool) -> TaskOut:
    return TaskOut(id=row["id"], task_id=row["id"], task_name=row["task_name"], status=row["status"],
                   closed=row["closed"], input_mode=row["input_mode"], project_id=row["project_id"],
                   created_by=row["created_by"], created_at=rfc3339(row["created_at"]),
                   updated_at=rfc3339(row["updated_at"]), prompt=row.get("prompt") if with_prompt else None,
                   attachments=list(row["attachments"]) or None)


def _joined(jobs: list[Row], key: str) -> str:
    return "".join(str(j["result"].get(key) or "") for j in jobs if isinstance(j["result"], dict))


def _lines(text: str) -> list[str]:
    if not text:
        return []
    parts = text.split("\n")
    return parts[:-1] if parts[-1] == "" else parts


def _visible(row: Row | None, principal: Principal) -> Row:
    """`row` when the caller may see it; a missing task and another user's task are the same 404."""
    if row is None:
        raise NotFound("task not found")
    audit.note(resource_id=row["id"], task_id=row["id"], scope_type="project", scope_id=row["project_id"])
    if row["created_by"] != principal.user_id and not principal.is_admin:
        audit.deny()
        raise NotFound("task not found")
    return row


class TaskService:
    def __init__(self, db: Database, settings: Settings, artifacts: ArtifactStore, audit_writer: audit.AuditWriter,
                 wake: Callable[[], None]) -> None:
        self.db = db
        self.settings = settings
        self.artifacts = artifacts
        self.audit = audit_writer
        self.wake = wake
        # Reads by id of concurrent requests share one query (GET /v1/tasks/{id} is the hot path).
        self._by_id: Coalescer[str, Row] = Coalescer(self._tasks_by_ids)

    # -- create ----------------------------------------------------------------------------------------------------

    async def create_json(self, principal: Principal, body: bytes) -> TaskOut:
        spec = validate(decode_body(body, TaskCreate))
        return await self.create(principal, spec, [], str(uuid.uuid4()))

    async def create_multipart(self, principal: Principal, stream: AsyncIterator[bytes], boundary: str) -> TaskOut:
        task_id = str(uuid.uuid4())
        try:
            parts = await read_multipart(stream, boundary, self.artifacts, task_id,
                                         max_json=self.settings.gateway.max_task_json_bytes)
            spec = validate(decode_body(parts.task_json, TaskCreate))
        except BaseException:
            await self.artifacts.adiscard(task_id)
            raise
        return await self.create(principal, spec, parts.files, task_id)

    async def create(self, principal: Principal, spec: TaskSpec, files: list[IncomingFile], task_id: str) -> TaskOut:
        """One transaction: task, artifacts, first job, audit row; the files (already written) go if it fails."""
        try:
            row = await self._insert(principal, spec, files, task_id)
        except BaseException:
            if files:
                await self.artifacts.adiscard(task_id)
            raise
        self.wake()
        return task_out(row, with_prompt=True)

    async def _insert(self, principal: Principal, spec: TaskSpec, files: list[IncomingFile], task_id: str) -> Row:
        artifact_ids = [str(uuid.uuid4()) for _ in files]
        kind, payload = job_payload(spec, files, artifact_ids, self.settings)
        metadata = Jsonb({"commands": spec.commands}) if spec.commands is not None else None
        stored_prompt = spec.prompt if spec.prompt is not None else "\n".join(spec.commands or [])
        audit.note(resource_id=task_id, task_id=task_id)
        async with self.db.transaction() as conn:
            project_id = await resolve_project(IdentityRepo(conn), principal, spec.project_id)
            audit.note(scope_type="project", scope_id=project_id)
            name, times = await self._insert_task(conn, principal, spec, task_id, project_id, stored_prompt,
                                                  metadata)
            for f, aid in zip(files, artifact_ids, strict=True):
                await conn.execute(q.INSERT_ARTIFACT, {
                    "id": aid, "task_id": task_id, "path": f"upload/{f.name}", "storage_ref": f.stored.storage_ref,
                    "size_bytes": f.stored.size, "content_type": f.content_type, "checksum": f.stored.sha256})
            await conn.execute(q.INSERT_JOB, {"task_id": task_id, "kind": kind,
                                              "payload": msgspec.json.encode(payload).decode()})
            rec = audit.current.get()
            if rec is not None:
                await self.audit.write_in(conn, rec, 201)
        return {"id": task_id, "task_name": name, "status": "queued", "closed": False, "input_mode": spec.input_mode,
                "project_id": project_id, "created_by": principal.user_id, "prompt": stored_prompt,
                "attachments": sorted(f"upload/{f.name}" for f in files), **times}

    async def _insert_task(self, conn: Conn, principal: Principal, spec: TaskSpec, task_id: str, project_id: str,
                           prompt: str, metadata: Jsonb | None) -> tuple[str, Row]:
        """Pick `name`, `name-2`, ... among the creator's names; the unique index settles a race, then we retry."""
        for _ in range(10):
            cur = await conn.execute(q.TAKEN_NAMES, {"user_id": principal.user_id, "base": spec.base_name})
            name = unique_name(spec.base_name, [r["task_name"] for r in await cur.fetchall()])
            try:
                async with conn.transaction():  # a savepoint: a lost race does not abort the create
                    cur = await conn.execute(q.INSERT_TASK, {
                        "id": task_id, "created_by": principal.user_id, "project_id": project_id, "task_name": name,
                        "input_mode": spec.input_mode, "prompt": prompt,
                        "acceptance_criteria": Jsonb(spec.acceptance_criteria)
                        if spec.acceptance_criteria is not None else None,
                        "metadata": metadata})
                    times = await cur.fetchone()
                    assert times is not None
                    return name, times
            except psycopg.errors.UniqueViolation:
                continue
        raise Conflict("could not pick a unique task name; retry")

    # -- reads -----------------------------------------------------------------------------------------------------

    async def _find(self, conn: Conn, principal: Principal, ref: str) -> Row:
        """A task by id or by the caller's own name; another user's task is a 404 (audited as a denial)."""
        if (task_id := canonical_uuid(ref)) is not None:
            cur = await conn.execute(q.TASK_BY_ID, {"id": task_id})
        elif not is_name(ref):  # names are normalized, so nothing else can match
            raise NotFound("task not found")
        else:
            cur = await conn.execute(q.TASK_BY_NAME, {"user_id": principal.user_id, "name": ref})
        return _visible(await cur.fetchone(), principal)

    async def _tasks_by_ids(self, ids: list[str]) -> dict[str, Row]:
        async with self.db.connection() as conn:
            cur = await conn.execute(q.TASKS_BY_IDS, {"ids": ids})
            return {r["id"]: r for r in await cur.fetchall()}

    async def get(self, principal: Principal, ref: str) -> TaskOut:
        if (task_id := canonical_uuid(ref)) is not None:
            return task_out(_visible(await self._by_id.get(task_id), principal), with_prompt=True)
        async with self.db.connection() as conn:
            return task_out(await self._find(conn, principal, ref), with_prompt=True)

    async def list_tasks(self, principal: Principal, limit: int, cursor: str | None,
                         status: str | None) -> TaskList:
        if status is not None and status not in taskstate.TASK_STATUSES:
            raise _bad("status", "must be one of " + ", ".join(taskstate.TASK_STATUSES))
        after_at, after_id = decode_cursor(cursor, TimeIdKey) if cursor else (None, None)
        async with self.db.connection() as conn:
            cur = await conn.execute(q.LIST_TASKS, {"user_id": principal.user_id, "status": status,
                                                    "after_at": after_at, "after_id": after_id, "limit": limit + 1})
            rows = await cur.fetchall()
        return TaskList(tasks=[task_out(r, with_prompt=False) for r in rows[:limit]],
                        next_cursor=next_page_cursor(rows, limit))

    async def _jobs(self, conn: Conn, task_id: str) -> list[Row]:
        cur = await conn.execute(q.JOBS_OF_TASK, {"task_id": task_id})
        return await cur.fetchall()

    async def result(self, principal: Principal, ref: str) -> TaskResult:
        async with self.db.connection() as conn:
            task = await self._find(conn, principal, ref)
            jobs = await self._jobs(conn, task["id"])
        out = [JobOut(id=j["id"], status=j["status"], result=j["result"] if isinstance(j["result"], dict) else None,
                      started_at=rfc3339_opt(j["started_at"]), ended_at=rfc3339_opt(j["ended_at"])) for j in jobs]
        if not task["closed"]:
            return TaskResult(task_id=task["id"], task_name=task["task_name"], status=task["status"], jobs=out)
        codes = [j["result"].get("exit_code") for j in jobs if isinstance(j["result"], dict)]
        exit_code = codes[-1] if codes and isinstance(codes[-1], int) else None
        return TaskResult(task_id=task["id"], task_name=task["task_name"], status=task["status"], jobs=out,
                          stdout=_joined(jobs, "stdout"), stderr=_joined(jobs, "stderr"), exit_code=exit_code)

    async def logs(self, principal: Principal, ref: str, stream: str | None) -> TaskLogs:
        stream = stream or "all"
        if stream not in STREAMS:
            raise _bad("stream", "must be stdout, stderr or all")
        async with self.db.connection() as conn:
            task = await self._find(conn, principal, ref)
            jobs = await self._jobs(conn, task["id"])
        stdout, stderr = _joined(jobs, "stdout"), _joined(jobs, "stderr")
        lines = (_lines(stdout) if stream != "stderr" else []) + (_lines(stderr) if stream != "stdout" else [])
        return TaskLogs(task_id=task["id"], task_name=task["task_name"], stream=stream, stdout=stdout, stderr=stderr,
                        lines=lines)

    # -- cancel ----------------------------------------------------------------------------------------------------

    async def cancel(self, principal: Principal, ref: str) -> TaskCanceled:
        async with self.db.transaction() as conn:
            task = await self._find(conn, principal, ref)
            status = await taskstate.cancel_task(conn, task["id"])
        if status != "canceled":
            raise Conflict(f"the task is already {status}")
        return TaskCanceled(task_id=task["id"], task_name=task["task_name"], canceled=True, status="canceled")

    # -- attachments -----------------------------------------------------------------------------------------------

    async def list_artifacts(self, principal: Principal, ref: str) -> ArtifactList:
        async with self.db.connection() as conn:
            task = await self._find(conn, principal, ref)
            cur = await conn.execute(q.ARTIFACTS_OF_TASK, {"task_id": task["id"]})
            rows = await cur.fetchall()
        return ArtifactList(task_id=task["id"], task_name=task["task_name"], artifacts=[
            ArtifactOut(artifact_id=r["id"], name=r["path"].rsplit("/", 1)[-1], path=r["path"],
                        size_bytes=r["size_bytes"] or 0, checksum_sha256=r["checksum_sha256"] or "",
                        created_at=rfc3339(r["created_at"]), content_type=r["content_type"]) for r in rows])

    async def read_input(self, task_id: str, artifact_id: str) -> tuple[str, bytes]:
        """(name, content) of an attachment, with no access check: for the scheduler, which runs the task."""
        async with self.db.connection() as conn:
            cur = await conn.execute(q.ARTIFACT_BY_ID, {"id": artifact_id, "task_id": task_id})
            row = await cur.fetchone()
        if row is None:
            raise LookupError(f"artifact {artifact_id} of task {task_id} not found")
        try:
            return row["path"].rsplit("/", 1)[-1], await self.artifacts.aread(row["storage_ref"])
        except (OSError, ValueError) as e:
            raise LookupError(f"artifact {artifact_id}: file missing ({type(e).__name__})") from None

    async def read_artifact(self, principal: Principal, ref: str, artifact_id: str) -> tuple[str, str, bytes]:
        """(filename, content type, bytes) of one attachment of a visible task."""
        aid = canonical_uuid(artifact_id)
        if aid is None:
            raise NotFound("artifact not found")
        async with self.db.connection() as conn:
            task = await self._find(conn, principal, ref)
            cur = await conn.execute(q.ARTIFACT_BY_ID, {"id": aid, "task_id": task["id"]})
            row = await cur.fetchone()
        if row is None:
            raise NotFound("artifact not found")
        audit.note(resource_id=row["id"])
        try:
            data = await self.artifacts.aread(row["storage_ref"])
        except (OSError, ValueError):
            log.error("artifact file missing", extra={"artifact_id": row["id"], "task_id": task["id"]})
            raise NotFound("artifact content not found") from None
        return row["path"].rsplit("/", 1)[-1], row["content_type"] or "application/octet-stream", data

"""Gateway task bodies (orchestrator.md §6): create, the task object, lists, results, logs, cancel, artifacts."""

from __future__ import annotations

from typing import Any

import msgspec


class TaskCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    prompt: str | None = None
    input_mode: str | None = None  # prompt (default, also "") | script | commands
    commands: list[str] | None = None
    task_name: str | None = None
    project_id: str | None = None
    use_inference: bool | None = None
    acceptance_criteria: list[str] | None = None


class TaskOut(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    id: str
    task_id: str
    task_name: str
    status: str
    closed: bool
    input_mode: str
    project_id: str
    created_by: str
    created_at: str
    updated_at: str
    prompt: str | None = None  # single GET (and create) only
    attachments: list[str] | None = None  # omitted when empty


class TaskList(msgspec.Struct, frozen=True, omit_defaults=True):
    tasks: list[TaskOut]
    next_cursor: str | None = None


class JobOut(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    status: str
    result: dict[str, Any] | None = None  # the worker's RunJobResponse, stored verbatim
    started_at: str | None = None
    ended_at: str | None = None


class TaskResult(msgspec.Struct, frozen=True, omit_defaults=True):
    task_id: str
    task_name: str
    status: str
    jobs: list[JobOut]
    stdout: str | None = None  # these three only once the task is closed
    stderr: str | None = None
    exit_code: int | None = None


class TaskLogs(msgspec.Struct, frozen=True):
    task_id: str
    task_name: str
    stream: str
    stdout: str
    stderr: str
    lines: list[str]


class TaskCanceled(msgspec.Struct, frozen=True):
    task_id: str
    task_name: str
    canceled: bool
    status: str


class ArtifactOut(msgspec.Struct, frozen=True, omit_defaults=True):
    artifact_id: str
    name: str
    path: str
    size_bytes: int
    checksum_sha256: str
    created_at: str
    content_type: str | None = None


class ArtifactList(msgspec.Struct, frozen=True):
    task_id: str
    task_name: str
    artifacts: list[ArtifactOut]

"""Worker API payloads (worker.md §5.4): the orchestrator's job request and the node's bounded result."""

from __future__ import annotations

from typing import Literal

import msgspec

JobStatus = Literal["completed", "failed", "timeout"]


class InputFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    content_base64: str


class SandboxSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    command: list[str] | None = None
    image: str | None = None
    env: dict[str, str] | None = None
    timeout_seconds: int | None = None
    network_policy: str | None = None
    use_inference: bool = False
    input_files: list[InputFile] | None = None
    job_spec: dict[str, object] | None = None
    runner: str | None = None


class OrchestratorToken(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    agent_token: str
    agent_token_expires_at: str | None = None


class RunJobRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    version: int
    task_id: str
    job_id: str
    sandbox: SandboxSpec
    orchestrator: OrchestratorToken | None = None


class Truncated(msgspec.Struct, frozen=True):
    stdout: bool = False
    stderr: bool = False


class JobError(msgspec.Struct, frozen=True):
    type: str
    message: str


class RunJobResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    version: int
    task_id: str
    job_id: str
    status: JobStatus
    exit_code: int
    stdout: str
    stderr: str
    started_at: str
    ended_at: str
    truncated: Truncated = msgspec.field(default_factory=Truncated)
    error: JobError | None = None

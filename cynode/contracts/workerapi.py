"""Worker API payloads (worker.md §5.4): the orchestrator's job request and the node's bounded result."""

from __future__ import annotations

from typing import Literal, Protocol

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


class DispatchError(Exception):
    pass


class DispatchRefused(DispatchError):
    """The node answered 429/503/409: the job goes back to the queue without costing an attempt."""

    def __init__(self, message: str, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DispatchLost(DispatchError):
    """No answer: the connection failed or dropped mid-call (the node died); retried on the next attempt."""


class DispatchFailed(DispatchError):
    """The node rejected the job or answered something unusable; the job fails."""


class WorkerClient(Protocol):
    """How the orchestrator runs a job on a node: in-process when colocated, HTTP with the node's bearer otherwise.

    Raises: DispatchRefused (429/503/409: try later), DispatchLost (no answer:
    the node died or was unreachable), DispatchFailed (anything else).
    """

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse: ...

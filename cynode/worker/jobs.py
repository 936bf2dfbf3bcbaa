"""Running one job on this node (worker.md §5.4): validation, slots, effective timeout, the sandbox environment,
and the bounded result. The Worker API route and the in-process WorkerClient both call `JobRunner.run`, so both
paths share every rule and limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cynode.config import Settings
from cynode.contracts.sandbox import SandboxOutcome, SandboxRequest, ShimSpec
from cynode.contracts.workerapi import (
    DispatchFailed,
    DispatchRefused,
    JobError,
    RunJobRequest,
    RunJobResponse,
    Truncated,
)
from cynode.errors import (
    Conflict,
    DomainError,
    FieldError,
    Invalid,
    LocalConstraint,
    LocalPolicyForbids,
    RateLimited,
    Unavailable,
)
from cynode.worker.runtime import EngineUnreachable, SandboxRuntime, image_allowed

log = logging.getLogger("cynode.worker.jobs")

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
INPUT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
RESERVED_ENV = {
    "CYNODE_TASK_ID", "CYNODE_JOB_ID", "CYNODE_WORKSPACE_DIR", "CYNODE_ARTIFACTS_DIR", "INFERENCE_PROXY_URL",
    "OLLAMA_BASE_URL", "SBA_JOB_STATUS_URL", "SBA_MCP_GATEWAY_URL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
}
MAX_COMMAND_BYTES = 256 * 1024
MAX_ENV_VALUE = 131072


class UnsupportedVersion(Invalid):
    title = "Unsupported payload version"
    type_uri = "https://cynode.ai/problems/unsupported-payload-version"


@dataclass
class JobInferenceHandle:
    """What a job gets when it asks for inference: a host dir with the proxy socket, env, an optional shim."""

    run_dir: str
    env: dict[str, str]
    shim: ShimSpec | None
    release: Callable[[], Awaitable[None]]


JobInference = Callable[[str], Awaitable[JobInferenceHandle | None]]  # job_id -> handle, None = unavailable


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class JobRunner:
    def __init__(self, settings: Settings, runtime: SandboxRuntime | None, *,
                 ready: Callable[[], str | None], inference: JobInference | None = None,
                 max_timeout_s: Callable[[], int | None] = lambda: None,
                 runtime_lost: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.sandbox = settings.worker.sandbox
        self.runtime = runtime
        self.not_ready_reason = ready  # None when the node accepts jobs, else a reason code
        self.inference = inference
        self.max_timeout_s = max_timeout_s  # config constraints.max_job_timeout_seconds
        self.runtime_lost = runtime_lost  # the engine stopped answering: the node re-checks (and revives) it now
        self._running: set[str] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    # -- validation (400s name the field; nothing runs) -------------------------------------------------------------

    def validate(self, req: RunJobRequest) -> tuple[str, list[str], dict[str, str], dict[str, bytes]]:
        if req.version != 1:
            raise UnsupportedVersion(f"payload version {req.version} is not supported; this node supports 1",
                                     [FieldError("version", "must be 1")])
        for name in ("task_id", "job_id"):
            if not _is_uuid(getattr(req, name)):
                raise Invalid(f"{name} must be a lowercase UUID", [FieldError(name, "not a lowercase UUID")])
        sb = req.sandbox
        image = sb.image if sb.image is not None else self.sandbox.default_image
        if not 1 <= len(image) <= 512 or any(c.isspace() for c in image):
            raise Invalid("sandbox.image must be 1-512 characters without whitespace",
                          [FieldError("sandbox.image", "invalid image reference")])
        if not image_allowed(image, self.sandbox.allowed_images):
            raise LocalConstraint(f"image {image!r} is not in this node's allowed_images",
                                  [FieldError("sandbox.image", "not allowed by sandbox.allowed_images")])
        command = sb.command or []
        if not 1 <= len(command) <= 256 or any(not c or "\0" in c for c in command):
            raise Invalid("sandbox.command must have 1-256 non-empty items without NUL",
                          [FieldError("sandbox.command", "invalid argv")])
        if sum(len(c.encode()) for c in command) > MAX_COMMAND_BYTES:
            raise Invalid("sandbox.command exceeds 256 KiB", [FieldError("sandbox.command", "too large")])
        env = self._filtered_env(sb.env or {})
        if sb.timeout_seconds is not None and sb.timeout_seconds < 1:
            raise Invalid("sandbox.timeout_seconds must be >= 1", [FieldError("sandbox.timeout_seconds", "< 1")])
        if sb.network_policy not in (None, "restricted", "none"):
            raise Invalid("sandbox.network_policy must be restricted or none",
                          [FieldError("sandbox.network_policy", "unsupported policy")])
        return image, command, env, self._input_files(sb.input_files or [])

    @staticmethod
    def _filtered_env(env: dict[str, str]) -> dict[str, str]:
        if len(env) > 256:
            raise Invalid("sandbox.env has more than 256 entries", [FieldError("sandbox.env", "too many entries")])
        out: dict[str, str] = {}
        for key, value in env.items():
            if not ENV_KEY.fullmatch(key):
                raise Invalid(f"sandbox.env key {key!r} is invalid", [FieldError(f"sandbox.env.{key}", "bad name")])
            if "\0" in value or len(value.encode()) > MAX_ENV_VALUE:
                raise Invalid(f"sandbox.env {key} value is too large or contains NUL",
                              [FieldError(f"sandbox.env.{key}", "bad value")])
            if key.upper() in RESERVED_ENV:
                log.warning("reserved env name dropped from a job request", extra={"env_name": key})
                continue
            out[key] = value
        return out

    @staticmethod
    def _input_files(files: list[Any]) -> dict[str, bytes]:
        if len(files) > 16:
            raise Invalid("at most 16 input_files", [FieldError("sandbox.input_files", "too many files")])
        out: dict[str, bytes] = {}
        for i, f in enumerate(files):
            field = f"sandbox.input_files[{i}].name"
            if not INPUT_NAME.fullmatch(f.name) or f.name in (".", ".."):
                raise Invalid(f"input file name {f.name!r} is invalid", [FieldError(field, "bad name")])
            if f.name in out:
                raise Invalid(f"duplicate input file {f.name!r}", [FieldError(field, "duplicate")])
            try:
                out[f.name] = base64.b64decode(f.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise Invalid(f"input file {f.name!r} is not valid base64",
                              [FieldError(f"sandbox.input_files[{i}].content_base64", "bad base64")]) from None
        return out

    def effective_timeout(self, requested: int | None) -> int:
        t = self.sandbox.timeouts
        limit = min(requested or t.default_seconds, t.max_seconds)
        cap = self.max_timeout_s()
        return min(limit, cap) if cap else limit

    # -- running ----------------------------------------------------------------------------------------------------

    async def run(self, req: RunJobRequest) -> RunJobResponse:
        if self.sandbox.mode == "disabled":
            raise LocalPolicyForbids("sandbox execution is disabled on this node")
        reason = self.not_ready_reason()
        if reason is not None or self.runtime is None:
            raise Unavailable(f"this node does not accept jobs now: {reason or 'runtime_unavailable'}",
                              headers={"Retry-After": "10"})
        image, command, env, files = self.validate(req)
        if req.job_id in self._running:
            raise Conflict(f"job {req.job_id} is already running on this node")
        if len(self._running) >= self.sandbox.max_concurrency:
            raise RateLimited("all job slots on this node are busy", headers={"Retry-After": "5"})
        self._running.add(req.job_id)
        started = now_rfc3339()
        try:
            return await self._run(req, image, command, env, files, started)
        except EngineUnreachable as e:  # nothing ran: the orchestrator requeues the job (503 costs no attempt)
            log.error("sandbox runtime unreachable; job refused", extra={"job_id": req.job_id, "error": str(e)})
            self.runtime_lost()
            raise Unavailable("this node's container engine does not answer; retry later",
                              headers={"Retry-After": "10"}) from None
        finally:
            self._running.discard(req.job_id)

    async def _run(self, req: RunJobRequest, image: str, command: list[str], env: dict[str, str],
                   files: dict[str, bytes], started: str) -> RunJobResponse:
        node_env = {"CYNODE_TASK_ID": req.task_id, "CYNODE_JOB_ID": req.job_id, "CYNODE_WORKSPACE_DIR": "/workspace",
                    "CYNODE_ARTIFACTS_DIR": "/job/artifacts", "HOME": "/tmp"}  # noqa: S108 - the sandbox's tmpfs
        handle: JobInferenceHandle | None = None
        if req.sandbox.use_inference:
            handle = await self.inference(req.job_id) if self.inference else None
            if handle is None:
                return self._response(req, started, SandboxOutcome(
                    status="failed", exit_code=-1, stdout="", stderr="", truncated=Truncated(),
                    error=JobError("inference_unavailable", "this node has no inference path")))
            node_env.update(handle.env)
        try:
            assert self.runtime is not None
            outcome = await self.runtime.run(SandboxRequest(
                task_id=req.task_id, job_id=req.job_id, image=image, command=command,
                env={**env, **node_env}, timeout_s=self.effective_timeout(req.sandbox.timeout_seconds),
                input_files=files, run_dir=handle.run_dir if handle else None, shim=handle.shim if handle else None,
            ))
        finally:
            if handle is not None:
                await handle.release()
        log.info("job done", extra={"job_id": req.job_id, "task_id": req.task_id, "status": outcome.status,
                                    "exit_code": outcome.exit_code})
        return self._response(req, started, outcome)

    @staticmethod
    def _response(req: RunJobRequest, started: str, o: SandboxOutcome) -> RunJobResponse:
        return RunJobResponse(version=1, task_id=req.task_id, job_id=req.job_id, status=o.status,
                              exit_code=o.exit_code, stdout=o.stdout, stderr=o.stderr, started_at=started,
                              ended_at=now_rfc3339(), truncated=o.truncated, error=o.error)


class InProcessWorkerClient:
    """The WorkerClient for a worker in this process: same structs, validation and limits, no HTTP."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
        try:
            return await asyncio.wait_for(self.runner.run(request), timeout_s)
        except DomainError as e:
            if e.status in (429, 503, 409):
                raise DispatchRefused(e.detail, float(e.headers.get("Retry-After", 5))) from None
            raise DispatchFailed(f"worker refused the job ({e.status}): {e.detail}") from None
        except TimeoutError:
            raise DispatchFailed(f"the worker did not finish within {timeout_s:.0f} s") from None

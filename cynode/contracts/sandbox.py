"""The sandbox runtime boundary inside the worker: what the Worker API asks a runtime to run, and what comes back.

Separate from the wire contract (workerapi.py) so a runtime never sees orchestrator concerns (versions, tokens).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from cynode.contracts.workerapi import JobError, Truncated


class ShimSpec(msgspec.Struct, frozen=True):
    """A sidecar whose network namespace the sandbox joins (the network-less loopback inference shim)."""

    image: str
    command: list[str]
    healthcheck_url: str = "http://127.0.0.1:11434/healthz"


class SandboxRequest(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    job_id: str
    image: str
    command: list[str]
    env: dict[str, str] = msgspec.field(default_factory=dict)  # already filtered: reserved names set by the node
    timeout_s: int
    input_files: dict[str, bytes] = msgspec.field(default_factory=dict)  # name -> content, written 0444
    run_dir: str | None = None  # host dir mounted at /run/cynode (inference proxy socket); None = no mount
    shim: ShimSpec | None = None


class SandboxOutcome(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["completed", "failed", "timeout"]
    exit_code: int  # -1 = none (never started, killed on timeout, canceled); 137 + oom_killed on OOM
    stdout: str
    stderr: str
    truncated: Truncated
    error: JobError | None = None


class RuntimeCheck(msgspec.Struct, frozen=True):
    ok: bool
    runtime: str  # podman | docker
    version: str = ""
    detail: str = ""
    rootless: bool = False

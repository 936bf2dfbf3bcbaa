"""The sandbox runtime seam: what the Worker API calls to run one job in a container (worker.md §1, §6).

`docker_api.DockerApiRuntime` (docker-py against Podman or Docker) is the implementation; tests of the Worker API
may use a fake with the same methods.  Nothing behind this seam ever runs a job on the host.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Protocol

from cynode.contracts.sandbox import RuntimeCheck, SandboxOutcome, SandboxRequest


class EngineUnreachable(Exception):
    """`run()` could not reach the container engine before anything of the job started: nothing ran, so the job may
    go to another node or come back later unchanged."""


class SandboxRuntime(Protocol):
    async def check(self) -> RuntimeCheck:
        """The startup runtime check: run `true` in the default image with every sandbox option."""
        ...

    async def run(self, req: SandboxRequest) -> SandboxOutcome:
        """Run one job to its end (completed, failed, timeout or canceled) and remove its container and dirs;
        EngineUnreachable when the engine did not answer before any of it started."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Stop a running job (its run() returns failed + canceled); False when no such job runs."""
        ...

    async def cleanup_leftovers(self) -> None:
        """Remove this node's sandbox containers and job dirs left by an earlier process (startup step 2)."""
        ...

    async def close(self) -> None:
        """Cancel running jobs, wait for their cleanup, release the engine connection."""
        ...


def image_allowed(image: str, patterns: list[str]) -> bool:
    """`sandbox.allowed_images`: unset = any image; else a glob must match the reference exactly as sent."""
    return not patterns or any(fnmatchcase(image, p) for p in patterns)

"""A scripted SandboxRuntime for unit tests of the worker's rules (worker.md §11: fake runtime for unit tests;
the real Podman runtime has its own integration tests)."""

from __future__ import annotations

import asyncio

from cynode.contracts.sandbox import RuntimeCheck, SandboxOutcome, SandboxRequest
from cynode.contracts.workerapi import Truncated


class ScriptedRuntime:
    def __init__(self, *, ok: bool = True, delay_s: float = 0.0, exit_code: int = 0) -> None:
        self.ok = ok
        self.delay_s = delay_s
        self.exit_code = exit_code
        self.requests: list[SandboxRequest] = []
        self.cleaned = 0

    async def check(self) -> RuntimeCheck:
        return RuntimeCheck(ok=self.ok, runtime="podman", version="4.3", detail="" if self.ok else "socket missing")

    async def cleanup_leftovers(self) -> None:
        self.cleaned += 1

    async def run(self, req: SandboxRequest) -> SandboxOutcome:
        self.requests.append(req)
        await asyncio.sleep(self.delay_s)
        return SandboxOutcome(status="completed" if self.exit_code == 0 else "failed", exit_code=self.exit_code,
                              stdout=" ".join(req.command), stderr="", truncated=Truncated())

    async def close(self) -> None:
        return None

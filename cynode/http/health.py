"""Liveness and readiness, on every listener (orchestrator.md §8.1, worker.md §3.2).

Readiness is an ordered list of gates; the first failing gate gives the reason code and a fix-it message. Each gate
reads state kept fresh elsewhere (or does one bounded probe), so /readyz answers quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, get


class GateResult(msgspec.Struct, omit_defaults=True):
    ok: bool
    reason_code: str = ""
    message: str = ""
    detail: str | None = None


class Check(msgspec.Struct, omit_defaults=True):
    name: str
    ok: bool
    detail: str | None = None


class ReadinessReport(msgspec.Struct, omit_defaults=True):
    status: str
    checks: list[Check]
    reason_code: str | None = None
    reason: str | None = None
    pm_model: dict[str, Any] | None = None


Gate = tuple[str, Callable[[], Awaitable[GateResult]]]

PASS = GateResult(ok=True)


class Readiness:
    """Evaluates the gates in order; a gate that raises or overruns its time budget counts as failed."""

    def __init__(self, gates: list[Gate] | None = None, *, timeout_s: float = 2.0) -> None:
        self.gates: list[Gate] = list(gates or [])
        self.timeout_s = timeout_s
        self.pm_model: Callable[[], dict[str, Any] | None] = lambda: None

    def add(self, name: str, gate: Callable[[], Awaitable[GateResult]]) -> None:
        self.gates.append((name, gate))

    async def _run(self, name: str, gate: Callable[[], Awaitable[GateResult]]) -> GateResult:
        try:
            return await asyncio.wait_for(gate(), self.timeout_s)
        except TimeoutError:
            return GateResult(False, f"{name}_timeout", f"the {name} check did not answer in {self.timeout_s:g} s")
        except Exception as e:  # a broken gate must never make us look ready
            return GateResult(False, f"{name}_error", f"the {name} check failed: {type(e).__name__}")

    async def report(self) -> ReadinessReport:
        results = await asyncio.gather(*(self._run(n, g) for n, g in self.gates))
        checks = [Check(name, r.ok, r.detail or (r.message if not r.ok else None))
                  for (name, _), r in zip(self.gates, results, strict=True)]
        first = next((r for r in results if not r.ok), None)
        if first is None:
            return ReadinessReport(status="ready", checks=checks, pm_model=self.pm_model())
        return ReadinessReport(status="not_ready", checks=checks, reason_code=first.reason_code,
                               reason=first.message, pm_model=self.pm_model())


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return "application/json" in request.headers.get("accept", "")


def health_routes(readiness: Readiness) -> list[Any]:
    @get("/healthz", media_type="text/plain", include_in_schema=True, sync_to_thread=False)
    def healthz() -> str:
        return "ok"

    @get("/readyz", include_in_schema=True)
    async def readyz(request: Request[Any, Any, Any]) -> Response[Any]:
        rep = await readiness.report()
        status = 200 if rep.status == "ready" else 503
        headers = {} if status == 200 else {"Retry-After": "5"}
        if _wants_json(request):
            return Response(msgspec.json.encode(rep), status_code=status, media_type="application/json",
                            headers=headers)
        text = "ready" if status == 200 else f"not ready: {rep.reason_code}: {rep.reason}"
        return Response(text, status_code=status, media_type="text/plain", headers=headers)

    return [healthz, readyz]

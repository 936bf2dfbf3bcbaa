"""Role composition: the one place that decides what runs in this process and how the parts reach each other.

`cynode serve --role orchestrator,worker,pma` (or `all`) builds only those roles. A part that another part needs is
passed in-process when both are here, or as its HTTP client when it lives elsewhere; no module asks where its peers
are.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cynode import __version__
from cynode.config import Settings
from cynode.errors import ConfigError
from cynode.http.server import Listener, bind

log = logging.getLogger("cynode.serve")

ALL_ROLES = ("orchestrator", "worker", "pma")


def parse_roles(value: str) -> frozenset[str]:
    parts = {p.strip().lower() for p in value.split(",") if p.strip()}
    if not parts:
        raise ConfigError("--role: give at least one of orchestrator, worker, pma, all")
    if "all" in parts:
        parts = (parts - {"all"}) | set(ALL_ROLES)
    unknown = sorted(parts - set(ALL_ROLES))
    if unknown:
        raise ConfigError(f"--role: unknown role {', '.join(unknown)} (use orchestrator, worker, pma or all)")
    return frozenset(parts)


@dataclass
class Role:
    """What a role contributes: listeners to open, then start/stop hooks (stop runs in reverse order)."""

    name: str
    listeners: list[tuple[str, Any, str]] = field(default_factory=list)  # (name, asgi app, listen addr)
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    # Called once listeners are bound, with {listener name: "host:port"} (port 0 resolves here).
    bound: Callable[[dict[str, str]], None] | None = None


class Composition:
    """Builds the roles in dependency order and keeps the in-process handles the others need."""

    def __init__(self, settings: Settings, roles: frozenset[str], *, migrate: bool = True) -> None:
        self.settings = settings
        self.roles = roles
        self.migrate = migrate
        self.parts: list[Role] = []
        self.orchestrator: Any = None
        self.worker: Any = None
        self.pma: Any = None
        self.stop_event = asyncio.Event()
        self.fatal_error: str | None = None

    def fatal(self, message: str) -> None:
        """A part hit an unrecoverable configuration error after start: stop the process with exit code 2."""
        self.fatal_error = message
        self.stop_event.set()

    def build(self) -> list[Role]:
        s = self.settings
        orch = None
        if "orchestrator" in self.roles:
            from cynode.orchestrator import Orchestrator

            orch = self.orchestrator = Orchestrator(s, migrate=self.migrate)
            self.parts.append(orch.role())
        if "pma" in self.roles:
            from cynode.pma.role import PmaRole

            if orch is not None:  # colocated: in-process, using the orchestrator's inference path and PM model
                self.pma = PmaRole(s, colocated_orchestrator=True,
                                   inference_url=lambda: s.inference.url or orch.local_inference_url(),
                                   model=lambda: s.inference.model or orch.pm_model_ref())
            else:
                self.pma = PmaRole(s, colocated_orchestrator=False)
            self.parts.append(self.pma.role())
        if orch is not None:
            if self.pma is not None:
                orch.pma_client = self.pma.service
            elif s.pma.url:
                from cynode.pma.client import HttpPmaClient

                if not s.pma.service_token:
                    raise ConfigError("pma.service_token: required to reach the PMA at pma.url")
                orch.pma_client = HttpPmaClient(s.pma.url, str(s.pma.service_token),
                                                timeout_s=s.pma.request_timeout_s)
        if "worker" in self.roles:
            from cynode.worker.role import WorkerNode

            control: Any
            if self.orchestrator is not None:  # colocated: no PSK, no JWT, no HTTP
                from cynode.controlplane.inprocess import InProcessNodeControl

                control = InProcessNodeControl(self.orchestrator)
            else:
                from cynode.worker.orchestrator_client import HttpNodeControl

                control = HttpNodeControl(s)
            self.worker = WorkerNode(s, control, on_fatal=self.fatal)
            self.parts.append(self.worker.role())
            if self.orchestrator is not None:  # and the orchestrator dispatches to it and calls its model in-process
                self.orchestrator.attach_local_worker(self.worker.node_slug, self.worker.client)
                self.orchestrator.local_inference_url = self.worker.inference_url
                self.orchestrator.local_node_wakers.append(self.worker.manager.wake)
        return self.parts


async def run(settings: Settings, roles: frozenset[str], *, migrate: bool = True,
              ready_file: str | None = None) -> int:
    t0 = time.perf_counter()
    comp = Composition(settings, roles, migrate=migrate)
    parts = comp.build()

    stop = comp.stop_event
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    listeners: list[Listener] = []
    try:
        for part in parts:
            addrs: dict[str, str] = {}
            for name, app, addr in part.listeners:
                lst = Listener(name, app, bind(addr))
                listeners.append(lst)
                addrs[name] = f"{lst.host}:{lst.port}"
            if part.bound:
                part.bound(addrs)
    except OSError as e:
        for lst in listeners:
            lst.sock.close()
        raise ConfigError(str(e)) from None

    for lst in listeners:
        lst.start()
    await asyncio.gather(*(lst.started() for lst in listeners))
    log.info("listening", extra={"version": __version__, "roles": sorted(roles),
                                 "listeners": {lst.name: f"{lst.host}:{lst.port}" for lst in listeners},
                                 "startup_ms": round((time.perf_counter() - t0) * 1000)})
    if ready_file:
        _write_ready_file(ready_file, listeners)

    exit_code = 0
    started: list[Role] = []
    start_task = asyncio.create_task(_start_parts(parts, started))
    stop_task = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if start_task in done and start_task.exception() is not None:
        exc = start_task.exception()
        log.error("startup failed: %s", exc, exc_info=not isinstance(exc, ConfigError | RuntimeError))
        exit_code = 2 if isinstance(exc, ConfigError) else 1
    elif start_task in done:
        log.info("started", extra={"startup_ms": round((time.perf_counter() - t0) * 1000)})
        # Everything built at startup (apps, routes, settings, model metadata) lives until exit: moving it out of the
        # collector's view keeps full collections short, which is the gateway's tail latency under load.
        gc.collect()
        gc.freeze()
        await stop.wait()
    else:
        start_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await start_task

    if comp.fatal_error:
        exit_code = 2
    log.info("shutting down")
    for part in reversed(started):
        if part.stop:
            try:
                await asyncio.wait_for(part.stop(), 30)
            except Exception:
                log.exception("error while stopping %s", part.name)
                exit_code = exit_code or 1
    await asyncio.gather(*(lst.stop() for lst in listeners), return_exceptions=True)
    log.info("stopped")
    return exit_code


async def _start_parts(parts: list[Role], started: list[Role]) -> None:
    for part in parts:
        started.append(part)  # stop() must also run for a part whose start() failed half-way
        if part.start:
            await part.start()


def _write_ready_file(path: str, listeners: list[Listener]) -> None:
    """Tests and tools start `serve` on port 0 and read the real ports from here."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({lst.name: f"http://{lst.host}:{lst.port}" for lst in listeners}, f)
    os.replace(tmp, path)

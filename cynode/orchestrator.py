"""The orchestrator role: the User API Gateway (:12080) and the control plane (:12082) over one database.

Startup follows orchestrator.md §13: secrets, database (embedded when no URL), migrations, seeds, then the
listeners accept API calls. The listeners open first, so /healthz answers at once and /readyz explains what is
still missing while the rest comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from cynode.config import ControlPlaneSettings, Settings, parse_listen_addr
from cynode.db import migrate as migrations
from cynode.db.embedded import postmaster_alive, restart_embedded, start_embedded
from cynode.db.pool import Database
from cynode.errors import ConfigError
from cynode.http.app import build_app
from cynode.http.health import PASS, GateResult, Readiness
from cynode.keys import load_or_create
from cynode.serve import Role

log = logging.getLogger("cynode.orchestrator")

EMBEDDED_WATCH_S = 2.0  # how often the embedded PostgreSQL's postmaster is looked for


class Orchestrator:
    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        self.migrate = migrate
        self.pma_client: Any = None  # cynode.contracts.pma.PmaClient, chosen in serve.py
        self.db: Database | None = None
        self._pg_watch: asyncio.Task[None] | None = None
        self.jwt_secret = b""
        self.secret_key = b""
        self.accepting = False
        self.local_workers: dict[str, Any] = {}
        self.gateway: Any = None  # cynode.gateway.wiring.GatewayServices once started
        self.controlplane: Any = None  # cynode.controlplane.wiring.ControlPlaneServices once started
        self.scheduler: Any = None
        self.controlplane_started = asyncio.Event()  # the colocated worker waits on it (InProcessNodeControl)
        self.readiness = Readiness()
        self.readiness.add("database", self._database_gate)
        self.readiness.add("inference_path", self._inference_path_gate)
        self.readiness.add("pm_model_selection", self._pm_gate("selection_gate"))
        self.readiness.add("pm_model_loaded", self._pm_gate("warm_gate"))
        self.readiness.add("pma", self._pma_gate)
        self.readiness.pm_model = self._pm_model_doc
        # serve.py hands these over when a worker runs in this process (in-process wiring, chosen in one place)
        self.local_inference_url: Callable[[], str | None] = lambda: None
        self.local_node_wakers: list[Callable[[], None]] = []
        self.gateway_app = build_app(
            "gateway", self._gateway_routes(), readiness=self.readiness,
            max_body_bytes=settings.gateway.max_body_bytes, accepting=lambda: self.accepting,
        )
        self.controlplane_app = build_app(
            "controlplane", self._controlplane_routes(), readiness=self.readiness,
            max_body_bytes=settings.controlplane.max_body_bytes, accepting=lambda: self.accepting,
        )

    # -- composition -----------------------------------------------------------------------------------------------

    def role(self) -> Role:
        s = self.settings
        return Role(
            name="orchestrator",
            listeners=[("gateway", self.gateway_app, s.gateway.listen_addr),
                       ("controlplane", self.controlplane_app, s.controlplane.listen_addr)],
            start=self.start,
            stop=self.stop,
            bound=self._bound,
        )

    def _bound(self, addrs: dict[str, str]) -> None:
        """Unless a public URL is configured, advertise the control plane where it really listens (port 0 etc.)."""
        cp = self.settings.controlplane
        if cp.public_url == ControlPlaneSettings().public_url:
            host, port = parse_listen_addr(addrs["controlplane"])
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
            self.settings = msgspec.structs.replace(self.settings, controlplane=msgspec.structs.replace(
                cp, public_url=f"http://{host}:{port}"))

    def attach_local_worker(self, node_slug: str, client: Any) -> None:
        """serve.py hands over the in-process WorkerClient of a worker that runs in this process."""
        self.local_workers[node_slug] = client

    def _gateway_routes(self) -> list[Any]:
        from cynode.gateway.wiring import gateway_routes

        return gateway_routes(self)

    def _controlplane_routes(self) -> list[Any]:
        from cynode.controlplane.wiring import controlplane_routes

        return controlplane_routes(self)

    def wake_scheduler(self) -> None:
        """Called after a task is committed, a config is acked or a node registers (orchestrator.md §7.1)."""
        if self.scheduler is not None:
            self.scheduler.wake()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        data = s.data_path
        self.jwt_secret = load_or_create(data, "jwt_secret", s.auth.jwt_secret)
        self.secret_key = load_or_create(data, "secret_key", s.orchestrator.secret_key)
        if self.secret_key == self.jwt_secret:
            raise ConfigError("orchestrator.secret_key must differ from auth.jwt_secret")
        if s.db.url:
            url = str(s.db.url)
        else:
            try:
                url = await asyncio.to_thread(start_embedded, data)
            except Exception as e:
                raise RuntimeError(f"embedded PostgreSQL failed to start in {data / 'postgres'}: {e}") from e
            self._pg_watch = asyncio.create_task(self._watch_embedded(data), name="embedded-postgres-watch")
        self.db = Database(url, s.db)
        await self._connect(self.db)
        if self.migrate:
            await asyncio.to_thread(migrations.migrate, url)
        from cynode.controlplane.wiring import start_controlplane
        from cynode.gateway.wiring import start_gateway

        self.gateway = await start_gateway(self)
        self.controlplane = await start_controlplane(self)
        self.controlplane_started.set()
        self.accepting = True

    async def _connect(self, db: Database) -> None:
        """Retry until the database answers; meanwhile /readyz reports database_unavailable."""
        await db.pool.open(wait=False)  # the pool keeps reconnecting in the background
        while True:
            try:
                await db.pool.wait(timeout=self.settings.db.connect_timeout_s)
                return
            except Exception as e:
                log.warning("database not reachable yet (%s); still trying", type(e).__name__)

    async def _watch_embedded(self, data: Path) -> None:
        """The embedded PostgreSQL this process runs is restarted if it dies (the OOM killer, a crash); the pool
        reconnects on its own, and requests in between get 503."""
        while True:
            await asyncio.sleep(EMBEDDED_WATCH_S)
            if await asyncio.to_thread(postmaster_alive, data):
                continue
            log.error("embedded PostgreSQL stopped; restarting it", extra={"pgdata": str(data / "postgres")})
            try:
                await asyncio.to_thread(restart_embedded, data)
                log.warning("embedded PostgreSQL restarted")
            except Exception as e:  # e.g. the old server's backends still hold its shared memory: next pass
                log.error("embedded PostgreSQL did not restart yet: %s", e)

    async def stop(self) -> None:
        self.accepting = False
        if self._pg_watch is not None:
            self._pg_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pg_watch
        if self.controlplane is not None:
            await self.controlplane.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.db is not None:
            await self.db.close()

    def notify_local_nodes(self) -> None:
        """A colocated worker polls its config at once (a remote one within its poll interval)."""
        for wake in self.local_node_wakers:
            wake()

    # -- readiness gates (orchestrator.md §8.1, in order) ----------------------------------------------------------

    def _pm_gate(self, name: str) -> Callable[[], Awaitable[GateResult]]:
        async def gate() -> GateResult:
            if self.controlplane is None:
                return GateResult(False, "pm_model_selection_failed", "the control plane is starting")
            result: GateResult = await getattr(self.controlplane.pm, name)()
            return result

        return gate

    async def _pma_gate(self) -> GateResult:
        if self.pma_client is None:
            return GateResult(False, "pma_not_started",
                              "no Project Manager agent: run the pma role here (--role all) or set pma.url")
        health = await self.pma_client.health()
        if health.state != "ready":
            return GateResult(False, "pma_not_ready", f"the Project Manager agent is {health.state}"
                              + (f": {health.detail}" if health.detail else ""))
        return PASS

    def direct_inference_url(self) -> str | None:
        """Where the orchestrator itself calls a model: `[inference] url`, else the colocated node's backend."""
        return self.settings.inference.url or self.local_inference_url()

    async def inference_models(self) -> list[str]:
        """Model ids a user may call directly: `[inference] model` plus what inference-capable nodes have
        available (orchestrator.md §10, agents.md §3.2), de-duplicated and sorted."""
        from cynode.controlplane import queries as q

        names: set[str] = {self.settings.inference.model} if self.settings.inference.model else set()
        if self.db is not None:
            stale_s = 3 * self.settings.worker.capability_report_interval_s
            async with self.db.connection() as conn:
                rows = await (await conn.execute(q.PM_CANDIDATE_NODES, {"stale_s": stale_s})).fetchall()
            for r in rows:
                if r["inference_ok"]:
                    inf = (r["capability_snapshot"] or {}).get("inference") or {}
                    names.update(inf.get("available_models") or [])
        return sorted(names)

    def pm_model_ref(self) -> str | None:
        sel = self.controlplane.pm.state.selection if self.controlplane is not None else None
        return sel.model_ref if sel else None

    def _pm_model_doc(self) -> dict[str, Any] | None:
        sel = self.controlplane.pm.state.selection if self.controlplane is not None else None
        return sel.as_dict() if sel else None

    async def _database_gate(self) -> GateResult:
        if self.db is not None and await self.db.ping(timeout=2.0):
            return PASS
        return GateResult(False, "database_unavailable",
                          "the database does not answer; check CYNODE_DATABASE_URL (or the embedded PostgreSQL log "
                          "under <data_dir>/postgres/log)")

    async def _inference_path_gate(self) -> GateResult:
        from cynode.controlplane.wiring import inference_path

        if self.db is None:
            return GateResult(False, "no_inference_path", "the control plane is starting")
        return await inference_path(self)

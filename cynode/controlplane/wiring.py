"""Builds the control plane's services and routes for the orchestrator (called from cynode.orchestrator)."""

from __future__ import annotations

import logging
from typing import Any

from cynode.controlplane import queries as q
from cynode.controlplane.admin import NodeAdmin
from cynode.controlplane.dispatch import WorkerDirectory
from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.pm_model import PmModelService
from cynode.controlplane.prompts import PromptExecutor
from cynode.controlplane.routes import controlplane_route_handlers
from cynode.controlplane.scheduler import Scheduler, node_slots
from cynode.http.health import PASS, GateResult

log = logging.getLogger("cynode.controlplane")


class ControlPlaneServices:
    def __init__(self, registry: NodeRegistry, workers: WorkerDirectory, scheduler: Scheduler | None,
                 pm: PmModelService, admin: NodeAdmin) -> None:
        self.registry = registry
        self.admin = admin
        self.workers = workers
        self.scheduler = scheduler
        self.pm = pm

    async def stop(self) -> None:
        await self.pm.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.workers.close()


def controlplane_routes(orch: Any) -> list[Any]:
    return controlplane_route_handlers(lambda: orch.controlplane)


async def inference_path(orch: Any) -> GateResult:
    """orchestrator.md §8.2: a dispatchable inference-capable node, or an active external credential."""
    stale_s = 3 * orch.settings.worker.capability_report_interval_s
    async with orch.db.connection() as conn:
        rows = await (await conn.execute(q.DISPATCHABLE_NODES, {"stale_s": stale_s})).fetchall()
        if any(s.inference_ok for s in node_slots(rows)):
            return PASS
        cred = await (await conn.execute(q.ACTIVE_CREDENTIAL_EXISTS)).fetchone()
    if cred and cred["ok"]:
        return PASS
    return GateResult(False, "no_inference_path",
                      "no inference path: register an inference-capable worker (`cynode serve --role worker`) "
                      "or add an external provider credential")


async def start_controlplane(orch: Any) -> ControlPlaneServices:
    s = orch.settings
    stale_s = 3 * s.worker.capability_report_interval_s

    async def selection_changed() -> None:
        await registry.refresh_all()  # the chosen node's config now names the model to load
        orch.notify_local_nodes()

    pm = PmModelService(orch.db, stale_s, on_selection_change=selection_changed)

    def changed() -> None:
        orch.wake_scheduler()
        pm.wake()

    registry = NodeRegistry(s, orch.db, orch.secret_key, orch.jwt_secret, on_change=changed,
                            selected_model=pm.selected_model_for)
    workers = WorkerDirectory(bearer_for=registry.expected_bearer)
    workers.local.update(orch.local_workers)
    prompts = PromptExecutor(s, local_url=orch.local_inference_url,
                             pm_model=lambda: pm.state.selection.model_ref if pm.state.selection else None,
                             inference_node_available=lambda: pm.state.inference_nodes > 0)
    scheduler = None
    if s.scheduler.enabled:
        read_artifact = getattr(orch.gateway, "read_artifact", None)
        scheduler = Scheduler(s, orch.db, workers, read_artifact=read_artifact, model_call=prompts)
        orch.scheduler = scheduler
        await scheduler.start()
    await pm.start()
    return ControlPlaneServices(registry, workers, scheduler, pm, NodeAdmin(orch.db, registry, stale_s))

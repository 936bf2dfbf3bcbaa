"""The worker role: composition of the node manager and the Worker API."""

from __future__ import annotations

import re
import socket

from cynode.config import Settings
from cynode.http.app import build_app
from cynode.http.health import GateResult, Readiness
from cynode.serve import Role


def default_node_slug() -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:63] or "node"
    return slug if slug not in ("register", "config", "capability") else f"node-{slug}"


class WorkerNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_slug = settings.worker.node_slug or default_node_slug()
        self.readiness = Readiness()
        self.readiness.add("registration", self._gate)
        self.app = build_app("worker", [], readiness=self.readiness, max_body_bytes=settings.worker.max_request_bytes)

    async def _gate(self) -> GateResult:
        return GateResult(False, "not_registered", "the node has not registered with the orchestrator yet")

    def role(self) -> Role:
        return Role(name="worker", listeners=[("worker", self.app, self.settings.worker.listen_addr)])


def build_worker(settings: Settings, orchestrator: object = None) -> WorkerNode:
    return WorkerNode(settings)

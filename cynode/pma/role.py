"""The `pma` role: the Project Manager agent. Colocated with the orchestrator it is called in-process; on its own
host it listens for the orchestrator with a service token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cynode.config import Settings
from cynode.contracts.pma import PmaHealth
from cynode.errors import ConfigError
from cynode.http.app import build_app
from cynode.http.health import PASS, GateResult, Readiness
from cynode.pma.bundles import load_bundle
from cynode.pma.service import PmaService
from cynode.serve import Role


class PmaRole:
    def __init__(self, settings: Settings, *, colocated_orchestrator: bool,
                 inference_url: Callable[[], str | None] | None = None,
                 model: Callable[[], str | None] | None = None) -> None:
        s = settings.pma
        role = s.role
        if colocated_orchestrator:
            # The orchestrator's desired state gives the colocated PMA its role: it serves cynodeai.pm.
            if role not in (None, "project_manager"):
                raise ConfigError(f"pma.role: {role} does not match the colocated orchestrator's project_manager")
            role = "project_manager"
        elif role is None:
            raise ConfigError("pma.role: missing; pass --pma-role=project_manager or --pma-role=project_analyst "
                              "(or set [pma] role / PMA_ROLE)")
        elif not s.service_token:
            raise ConfigError("pma.service_token: required for a PMA serving a remote orchestrator "
                              "(CYNODE_PMA_SERVICE_TOKEN, the same value on both hosts)")
        self.settings = settings
        self.colocated = colocated_orchestrator
        self.agent_role = role
        self._backend_model: str | None = None
        self.service = PmaService(s, load_bundle(s, role),
                                  inference_url=inference_url or (lambda: s.inference_url),
                                  model=model or self._standalone_model)
        self.readiness = Readiness()
        self.readiness.add("pma", self._gate)
        routes: list[Any] = []
        if not colocated_orchestrator:
            from cynode.pma.app import pma_routes

            routes = pma_routes(self.service, str(s.service_token))
        self.app = build_app("pma", routes, readiness=self.readiness)

    def _standalone_model(self) -> str | None:
        return self.settings.pma.model or self.settings.inference.model or self._backend_model

    async def _discover_model(self) -> None:
        """A PMA on its own host with no model configured uses the backend's first model."""
        url = self.settings.pma.inference_url
        if self.colocated or self._standalone_model() or not url:
            return
        from cynode.inference.client import OllamaClient
        from cynode.inference.errors import InferenceError

        try:
            async with OllamaClient(url, timeout=5) as c:
                tags = await c.tags()
            self._backend_model = tags.models[0].name if tags.models else None
        except InferenceError:
            return

    async def _gate(self) -> GateResult:
        await self._discover_model()
        health: PmaHealth = await self.service.health()
        if health.state == "ready":
            return PASS
        return GateResult(False, "pma_not_ready", health.detail or health.state)

    def role(self) -> Role:
        listeners: list[tuple[str, Any, str]] = []
        if not self.colocated:
            listeners.append(("pma", self.app, self.settings.pma.listen_addr))
        return Role(name="pma", listeners=listeners)

"""The `pma` role: the Project Manager agent service."""

from __future__ import annotations

from typing import Any

from cynode.config import Settings
from cynode.errors import ConfigError
from cynode.http.app import build_app
from cynode.http.health import GateResult, Readiness
from cynode.serve import Role


class PmaService:
    def __init__(self, settings: Settings, *, colocated_orchestrator: bool) -> None:
        role = settings.pma.role
        if colocated_orchestrator:
            # The orchestrator's desired state gives the colocated PMA its role: it serves cynodeai.pm.
            if role not in (None, "project_manager"):
                raise ConfigError(f"pma.role: {role} does not match the colocated orchestrator's project_manager")
            role = "project_manager"
        elif role is None:
            raise ConfigError("pma.role: missing; pass --pma-role=project_manager or --pma-role=project_analyst "
                              "(or set [pma] role / PMA_ROLE)")
        self.agent_role = role
        self.settings = settings
        self.colocated = colocated_orchestrator
        self.readiness = Readiness()
        self.readiness.add("pma", self._gate)
        self.app = build_app("pma", [], readiness=self.readiness)

    async def _gate(self) -> GateResult:
        return GateResult(False, "pma_not_ready", "the agent loop is not implemented yet")

    def role(self) -> Role:
        listeners: list[tuple[str, Any, str]] = []
        if not self.colocated:
            listeners.append(("pma", self.app, self.settings.pma.listen_addr))
        return Role(name="pma", listeners=listeners)


def build_pma(settings: Settings, *, colocated_orchestrator: bool) -> PmaService:
    return PmaService(settings, colocated_orchestrator=colocated_orchestrator)

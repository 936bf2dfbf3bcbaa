"""Builds the control plane's services and routes for the orchestrator (called from cynode.orchestrator)."""

from __future__ import annotations

from typing import Any


class ControlPlaneServices:
    async def stop(self) -> None:
        return None


def controlplane_routes(orch: Any) -> list[Any]:
    return []


async def start_controlplane(orch: Any) -> ControlPlaneServices:
    return ControlPlaneServices()

"""Builds the gateway's services and routes for the orchestrator (called from cynode.orchestrator)."""

from __future__ import annotations

from typing import Any


class GatewayServices:
    async def stop(self) -> None:
        return None


def gateway_routes(orch: Any) -> list[Any]:
    return []


async def start_gateway(orch: Any) -> GatewayServices:
    return GatewayServices()

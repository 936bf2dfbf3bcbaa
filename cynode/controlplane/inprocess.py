"""The control plane as seen by a worker in the same process (serve.py picks this over HTTP when colocated)."""

from __future__ import annotations

from typing import Any

from cynode.contracts.node import BootstrapPayload, CapabilityReport, ConfigAck, NodeConfig


class InProcessNodeControl:
    """NodeControl without the network: no PSK and no JWT, the same structs and validation."""

    def __init__(self, orchestrator: Any) -> None:
        self.orch = orchestrator
        self.node_id: str | None = None
        self.node_slug = ""

    async def wait_reachable(self) -> None:
        await self.orch.controlplane_started.wait()

    @property
    def _registry(self) -> Any:
        return self.orch.controlplane.registry

    async def register(self, capability: CapabilityReport) -> BootstrapPayload:
        node, payload = await self._registry.register(capability)
        self.node_id, self.node_slug = node.node_id, node.node_slug
        return payload

    def _id(self) -> str:
        if self.node_id is None:
            raise RuntimeError("register first")
        return self.node_id

    async def get_config(self) -> NodeConfig:
        config: NodeConfig = await self._registry.get_config(self._id())
        return config

    async def ack_config(self, ack: ConfigAck) -> None:
        from cynode.errors import Conflict
        from cynode.worker.orchestrator_client import StaleConfig

        try:
            await self._registry.ack(self._id(), self.node_slug, ack)
        except Conflict as e:  # the same signal the HTTP client gives for a 409
            raise StaleConfig(e.detail) from None

    async def report_capability(self, report: CapabilityReport) -> None:
        await self._registry.report_capability(self._id(), self.node_slug, report)

    async def close(self) -> None:
        return None

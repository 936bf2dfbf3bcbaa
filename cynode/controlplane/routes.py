"""Control plane HTTP routes (:12082): node registration, config fetch and ack, capability reports (§9.1)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from cynode.contracts.node import BootstrapPayload, CapabilityReport, ConfigAck, NodeConfig, RegisterRequest
from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.ratelimit import SlidingWindow
from cynode.errors import RateLimited, Unauthenticated, Unavailable
from cynode.http.body import read_json

NODE_BODY_LIMIT = 1024 * 1024


def node_principal(request: Request[Any, Any, Any], registry: NodeRegistry) -> tuple[str, str]:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a node token is required")
    node_id, slug = registry.authenticate(token.strip())
    state = request.scope.setdefault("state", {})
    state["node_id"], state["subject_type"] = node_id, "node"
    return node_id, slug


def controlplane_route_handlers(services: Any) -> list[Any]:
    """`services` is a zero-argument callable returning the started ControlPlaneServices."""
    register_limit = SlidingWindow(limit=10, window_s=60)

    def registry() -> NodeRegistry:
        svc = services()
        if svc is None:
            raise Unavailable("the control plane is starting", headers={"Retry-After": "2"})
        return svc.registry

    @post("/v1/nodes/register", request_max_body_size=NODE_BODY_LIMIT)
    async def register(request: Request[Any, Any, Any]) -> Response[BootstrapPayload]:
        ip = request.client.host if request.client else "unknown"
        wait = register_limit.hit(ip)
        if wait:
            raise RateLimited("too many registration attempts", headers={"Retry-After": str(wait)})
        body = await read_json(request, RegisterRequest)
        nodes = registry()
        nodes.check_psk(body.psk)
        node, payload = await nodes.register(body.capability)
        return Response(payload, status_code=201 if node.created else 200)

    @get("/v1/nodes/config")
    async def get_config(request: Request[Any, Any, Any]) -> NodeConfig:
        nodes = registry()
        node_id, _slug = node_principal(request, nodes)
        return await nodes.get_config(node_id)

    @post("/v1/nodes/config", status_code=204, request_max_body_size=16 * 1024)
    async def ack_config(request: Request[Any, Any, Any]) -> None:
        nodes = registry()
        node_id, slug = node_principal(request, nodes)
        await nodes.ack(node_id, slug, await read_json(request, ConfigAck))

    @post("/v1/nodes/capability", status_code=204, request_max_body_size=NODE_BODY_LIMIT)
    async def capability(request: Request[Any, Any, Any]) -> None:
        nodes = registry()
        node_id, slug = node_principal(request, nodes)
        await nodes.report_capability(node_id, slug, await read_json(request, CapabilityReport))

    return [register, get_config, ack_config, capability]

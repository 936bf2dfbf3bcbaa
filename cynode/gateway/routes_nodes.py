"""Node administration on the gateway (admin only): thin handlers over the control plane's NodeAdmin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, get, post

from cynode.contracts.node import NodeList, NodeSummary
from cynode.controlplane.admin import NodeAdmin
from cynode.errors import Unavailable
from cynode.gateway.deps import PathStr
from cynode.gateway.guard import caller, policy
from cynode.http.pagination import parse_limit

Req = Request[Any, Any, Any]


def node_routes(admin: Callable[[], Any]) -> list[Any]:
    """`admin` returns the control plane's NodeAdmin (None while the orchestrator starts)."""

    def nodes(request: Req) -> NodeAdmin:
        caller(request)  # the guard has authenticated and checked the admin binding
        svc: NodeAdmin | None = admin()
        if svc is None:
            raise Unavailable("the control plane is starting", headers={"Retry-After": "2"})
        return svc

    @get("/v1/nodes", opt=policy("list", "node", admin=True))
    async def list_nodes(request: Req) -> NodeList:
        qp = request.query_params
        return await nodes(request).list(parse_limit(qp.get("limit")), qp.get("cursor"))

    @get("/v1/nodes/{ref:str}", opt=policy("read", "node", admin=True))
    async def get_node(request: Req, ref: PathStr) -> NodeSummary:
        return await nodes(request).get(ref)

    def action(verb: str, status: str | None) -> Any:
        @post(f"/v1/nodes/{{ref:str}}/{verb}", status_code=200, opt=policy(verb, "node", admin=True),
              name=f"node-{verb}")
        async def handler(request: Req, ref: PathStr) -> NodeSummary:
            svc = nodes(request)
            if status is None:
                return await svc.refresh_config(ref)
            return await svc.set_status(ref, status)

        return handler

    return [list_nodes, get_node, action("enable", "active"), action("disable", "inactive"),
            action("drain", "drained"), action("refresh-config", None)]

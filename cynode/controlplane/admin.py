"""Node administration for admins (orchestrator.md §14 nodes admin): list, inspect, enable, disable, drain, and
re-issue a node's configuration. `drained` takes no new jobs; running jobs finish. `inactive` is refused config."""

from __future__ import annotations

from typing import Any

from cynode.contracts.node import NodeList, NodeSummary
from cynode.controlplane import queries as q
from cynode.controlplane.nodes import NodeRegistry
from cynode.db.pool import Database
from cynode.errors import NotFound
from cynode.http.pagination import TimeIdKey, decode_cursor, next_page_cursor

LIST_NODES = """
SELECT n.id, n.node_slug, n.status, n.config_version, n.config_ack_status, n.last_seen_at, n.created_at,
       c.capability_snapshot,
       (SELECT count(*) FROM jobs j WHERE j.node_id = n.id AND j.status = 'running') AS running
  FROM nodes n LEFT JOIN node_capabilities c ON c.node_id = n.id
 WHERE (%(ref)s::text IS NULL OR n.id::text = %(ref)s OR n.node_slug = %(ref)s)
   AND (%(after)s::timestamptz IS NULL OR (n.created_at, n.id) < (%(after)s, %(after_id)s::uuid))
 ORDER BY n.created_at DESC, n.id DESC
 LIMIT %(limit)s
"""

SET_STATUS = "UPDATE nodes SET status = %(status)s, updated_at = now() WHERE id = %(id)s"


def _summary(row: dict[str, Any], dispatchable: set[str]) -> NodeSummary:
    cap = row["capability_snapshot"] or {}
    inf = cap.get("inference") or {}
    summary = {
        "platform": cap.get("platform"), "cpu_cores": (cap.get("compute") or {}).get("cpu_cores"),
        "sandbox": (cap.get("sandbox") or {}).get("supported"), "inference": inf.get("running"),
        "models": inf.get("available_models"), "worker_api": (cap.get("worker_api") or {}).get("base_url"),
    }
    seen = row["last_seen_at"]
    return NodeSummary(
        node_id=str(row["id"]), node_slug=row["node_slug"], status=row["status"], enabled=row["status"] != "inactive",
        dispatchable=str(row["id"]) in dispatchable, running_jobs=int(row["running"]),
        config_version=row["config_version"], config_ack_status=row["config_ack_status"],
        last_heartbeat=seen.strftime("%Y-%m-%dT%H:%M:%SZ") if seen else None,
        capability_summary={k: v for k, v in summary.items() if v is not None} or None)


class NodeAdmin:
    def __init__(self, db: Database, registry: NodeRegistry, stale_s: float) -> None:
        self.db = db
        self.registry = registry
        self.stale_s = stale_s

    async def _dispatchable(self) -> set[str]:
        async with self.db.connection() as conn:
            rows = await (await conn.execute(q.DISPATCHABLE_NODES, {"stale_s": self.stale_s})).fetchall()
        return {str(r["id"]) for r in rows}

    async def list(self, limit: int, cursor: str | None) -> NodeList:
        after, after_id = decode_cursor(cursor, TimeIdKey) if cursor else (None, None)
        async with self.db.connection() as conn:
            rows = await (await conn.execute(LIST_NODES, {"ref": None, "after": after, "after_id": after_id,
                                                          "limit": limit + 1})).fetchall()
        dispatchable = await self._dispatchable()
        return NodeList(nodes=[_summary(r, dispatchable) for r in rows[:limit]],
                        next_cursor=next_page_cursor(rows, limit))

    async def get(self, ref: str) -> NodeSummary:
        async with self.db.connection() as conn:
            row = await (await conn.execute(LIST_NODES, {"ref": ref, "after": None, "after_id": None,
                                                         "limit": 1})).fetchone()
        if row is None:
            raise NotFound(f"no node {ref!r}")
        return _summary(row, await self._dispatchable())

    async def set_status(self, ref: str, status: str) -> NodeSummary:
        node = await self.get(ref)
        async with self.db.connection() as conn:
            await conn.execute(SET_STATUS, {"id": node.node_id, "status": status})
        self.registry.on_change()
        return await self.get(ref)

    async def refresh_config(self, ref: str) -> NodeSummary:
        """Issue a fresh config version (the node fetches it at its next poll)."""
        node = await self.get(ref)
        await self.registry.reissue(node.node_id)
        return await self.get(ref)

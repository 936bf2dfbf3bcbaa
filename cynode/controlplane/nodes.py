"""Node registry: registration with the PSK, capability ingest, desired config and its delivery, acks
(orchestrator.md §9, worker.md §4).

The desired configuration of a node is derived from its capability report and the orchestrator's decisions (PM model
selection). A new ULID `config_version` is minted only when the desired payload's hash changes; the Worker API bearer
token is derived from the node id and the config version (HMAC, §9.3), so nothing secret is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import ulid
from psycopg.types.json import Jsonb

from cynode.config import Settings, parse_duration
from cynode.contracts.node import (
    BootstrapAuth,
    BootstrapEndpoints,
    BootstrapOrchestrator,
    BootstrapPayload,
    CapabilityReport,
    ConfigAck,
    NodeConfig,
)
from cynode.controlplane import queries as q
from cynode.db.pool import Conn, Database
from cynode.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, Unauthenticated, Unavailable

log = logging.getLogger("cynode.controlplane.nodes")

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RESERVED_SLUGS = {"register", "config", "capability"}


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_hash(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def capability_hash(report: CapabilityReport) -> str:
    """The node's capability identity: the report minus its timestamp and service status (worker.md §4.7)."""
    doc = msgspec.to_builtins(report)
    doc.pop("reported_at", None)
    doc.pop("managed_services_status", None)
    return canonical_hash(doc)


def worker_bearer_token(secret_key: bytes, node_id: str, config_version: str) -> str:
    mac = hmac.new(secret_key, f"worker-api:{node_id}:{config_version}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def inference_backend_for(report: dict[str, Any], selected_model: str | None) -> dict[str, Any] | None:
    """The inference-container decision (orchestrator.md §9.2): the first matching rule wins."""
    inf = report.get("inference") or {}
    labels = (report.get("node") or {}).get("labels") or []
    if inf.get("existing_service"):
        return {"enabled": False, **({"selected_model": selected_model} if selected_model else {})}
    if inf.get("mode") == "disabled" or inf.get("supported") is not True or "sandbox_only" in labels:
        return None
    devices = (report.get("gpu") or {}).get("devices") or []
    variant = "cpu"
    if any((d.get("features") or {}).get("rocm_version") or "amd" in (d.get("vendor") or "").lower()
           for d in devices):
        variant = "rocm"
    elif any((d.get("features") or {}).get("cuda_capability") or "nvidia" in (d.get("vendor") or "").lower()
             for d in devices):
        variant = "cuda"
    backend: dict[str, Any] = {"enabled": True, "variant": variant, "port": 11434}
    if selected_model:
        backend["selected_model"] = selected_model
    return backend


@dataclass
class RegisteredNode:
    node_id: str
    node_slug: str
    created: bool


class NodeRegistry:
    def __init__(self, settings: Settings, db: Database, secret_key: bytes, jwt_secret: bytes, *,
                 on_change: Callable[[], None] = lambda: None,
                 selected_model: Callable[[str], str | None] = lambda slug: None) -> None:
        self.settings = settings
        self.db = db
        self.secret_key = secret_key
        self.jwt_secret = jwt_secret
        self.on_change = on_change  # wakes the scheduler and re-runs PM model selection
        self.selected_model = selected_model
        cp = settings.controlplane
        self.public_url = cp.public_url.rstrip("/")
        self.jwt_ttl_s = parse_duration(cp.node_jwt_ttl)

    # -- registration --------------------------------------------------------------------------------------------

    def check_psk(self, psk: str) -> None:
        expected = self.settings.controlplane.node_registration_psk
        if not expected:
            raise Unavailable("node registration is disabled: no registration PSK is configured",
                              headers={"Retry-After": "60"})
        if not hmac.compare_digest(psk.encode(), str(expected).encode()):
            raise Unauthenticated("invalid registration credentials")

    @staticmethod
    def validate_report(report: CapabilityReport) -> None:
        if report.version != 1:
            raise Invalid(f"capability.version {report.version} is not supported (expected 1)",
                          [FieldError("capability.version", "must be 1")])
        slug = report.node.node_slug
        if not SLUG.fullmatch(slug) or slug in RESERVED_SLUGS:
            raise Invalid(f"invalid node_slug {slug!r}", [FieldError(
                "capability.node.node_slug", "must match ^[a-z0-9][a-z0-9-]{0,62}$ and not be reserved")])
        if not report.worker_api.base_url.startswith(("http://", "https://")):
            raise Invalid("worker_api.base_url must be an http(s) URL",
                          [FieldError("capability.worker_api.base_url", "not http(s)")])

    def _target_url(self, report: CapabilityReport) -> str:
        override = self.settings.controlplane.worker_api_target_url
        if override:
            log.info("worker API target URL overridden by configuration",
                     extra={"node_slug": report.node.node_slug, "url": override})
            return override
        return report.worker_api.base_url

    async def register(self, report: CapabilityReport) -> tuple[RegisteredNode, BootstrapPayload]:
        """Register (or re-register) a node whose PSK the caller has checked (or that is colocated)."""
        self.validate_report(report)
        async with self.db.transaction() as conn:
            row = await (await conn.execute(q.UPSERT_NODE, {"slug": report.node.node_slug,
                                                            "url": self._target_url(report)})).fetchone()
            assert row is not None
            node_id = str(row["id"])
            await self._store_capability(conn, node_id, report)
            await self._refresh_desired(conn, node_id)
        node = RegisteredNode(node_id, report.node.node_slug, bool(row["created"]))
        log.info("node registered", extra={"node_id": node_id, "node_slug": node.node_slug, "new_node": node.created})
        self.on_change()
        return node, self.bootstrap(node)

    def bootstrap(self, node: RegisteredNode) -> BootstrapPayload:
        from cynode.auth.tokens import encode_jwt

        token, expires = encode_jwt({"sub": node.node_id, "node_slug": node.node_slug}, self.jwt_secret,
                                    self.jwt_ttl_s, "node")
        base = self.public_url
        return BootstrapPayload(
            version=1, issued_at=utcnow(),
            orchestrator=BootstrapOrchestrator(base_url=base, endpoints=BootstrapEndpoints(
                worker_registration_url=f"{base}/v1/nodes/register",
                node_config_url=f"{base}/v1/nodes/config",
                node_report_url=f"{base}/v1/nodes/capability")),
            auth=BootstrapAuth(node_jwt=token, expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ")),
        )

    def authenticate(self, token: str) -> tuple[str, str]:
        """Node JWT -> (node_id, node_slug); a user token (or anything else) is 401."""
        from cynode.auth.tokens import decode_jwt

        claims = decode_jwt(token, self.jwt_secret, "node")
        return str(claims["sub"]), str(claims.get("node_slug", ""))

    # -- capability -------------------------------------------------------------------------------------------------

    async def _store_capability(self, conn: Conn, node_id: str, report: CapabilityReport) -> bool:
        """Upsert the snapshot; True when the capability hash changed."""
        new_hash = capability_hash(report)
        prev = await (await conn.execute(
            "SELECT capability_hash FROM node_capabilities WHERE node_id = %(node_id)s", {"node_id": node_id}
        )).fetchone()
        await conn.execute(q.UPSERT_CAPABILITY, {"node_id": node_id, "hash": new_hash,
                                                 "snapshot": Jsonb(msgspec.to_builtins(report))})
        return prev is None or prev["capability_hash"] != new_hash

    async def report_capability(self, node_id: str, node_slug: str, report: CapabilityReport) -> None:
        self.validate_report(report)
        if report.node.node_slug != node_slug:
            raise Invalid("node_slug does not match the node token", [FieldError("node.node_slug", "mismatch")])
        async with self.db.transaction() as conn:
            await self._lock(conn, node_id)
            await conn.execute(q.TOUCH_NODE, {"node_id": node_id, "url": self._target_url(report)})
            if await self._store_capability(conn, node_id, report):
                await self._refresh_desired(conn, node_id)
        self.on_change()  # every heartbeat feeds readiness and dispatchability

    async def _lock(self, conn: Conn, node_id: str) -> dict[str, Any]:
        node = await (await conn.execute(q.LOCK_NODE, {"node_id": node_id})).fetchone()
        if node is None:
            raise NotFound("unknown node")
        return node

    # -- desired config -------------------------------------------------------------------------------------------

    async def refresh_all(self) -> None:
        """Re-derive every node's desired config (e.g. after PM model selection changed)."""
        async with self.db.connection() as conn:
            ids = [str(r["id"]) for r in await (await conn.execute("SELECT id FROM nodes")).fetchall()]
        for node_id in ids:
            async with self.db.transaction() as conn:
                await self._lock(conn, node_id)
                await self._refresh_desired(conn, node_id)

    async def reissue(self, node_id: str) -> None:
        """Mint a new config version even though nothing changed (an operator's refresh-config)."""
        async with self.db.transaction() as conn:
            await self._lock(conn, node_id)
            await self._refresh_desired(conn, node_id, force=True)
        self.on_change()

    async def _refresh_desired(self, conn: Conn, node_id: str, *, force: bool = False) -> None:
        row = await (await conn.execute(q.GET_NODE, {"node_id": node_id})).fetchone()
        assert row is not None
        desired = self._desired(row)
        digest = canonical_hash(desired)
        meta = row["metadata"] or {}
        if meta.get("desired_config_hash") == digest and not force:
            return
        version = ulid.new().str
        await conn.execute(q.SET_DESIRED_CONFIG, {"node_id": node_id, "version": version, "hash": digest,
                                                  "config": Jsonb(desired), "issued_at": utcnow()})
        log.info("new node config issued", extra={"node_slug": row["node_slug"], "config_version": version})

    def _desired(self, row: dict[str, Any]) -> dict[str, Any]:
        report = row["capability_snapshot"] or {}
        slug = row["node_slug"]
        desired: dict[str, Any] = {
            "node_slug": slug,
            "orchestrator": {"base_url": self.public_url, "endpoints": {
                "worker_api_target_url": row["worker_api_target_url"] or "",
                "node_report_url": f"{self.public_url}/v1/nodes/capability",
            }},
            "constraints": {"max_job_timeout_seconds": self.settings.worker.sandbox.timeouts.max_seconds},
        }
        backend = inference_backend_for(report, self.selected_model(slug))
        if backend is not None:
            desired["inference_backend"] = backend
        return desired

    async def get_config(self, node_id: str) -> NodeConfig:
        async with self.db.connection() as conn:
            row = await (await conn.execute(q.GET_NODE, {"node_id": node_id})).fetchone()
        if row is None:
            raise NotFound("unknown node")
        if row["status"] == "inactive":
            raise Forbidden("this node is disabled")
        meta = row["metadata"] or {}
        desired = meta.get("desired_config")
        version = meta.get("desired_config_version")
        if not desired or not version:
            raise NotFound("no configuration has been issued for this node yet")
        doc = {**desired, "version": 1, "config_version": version,
               "issued_at": meta.get("desired_config_issued_at") or utcnow(),
               "worker_api": {"orchestrator_bearer_token": worker_bearer_token(self.secret_key, node_id, version)}}
        return msgspec.convert(doc, NodeConfig)

    async def ack(self, node_id: str, node_slug: str, ack: ConfigAck) -> None:
        if ack.version != 1:
            raise Invalid("ack version must be 1", [FieldError("version", "must be 1")])
        if ack.node_slug != node_slug:
            raise Invalid("node_slug does not match the node token", [FieldError("node_slug", "mismatch")])
        if ack.status not in ("applied", "failed", "rolled_back"):
            raise Invalid("status must be applied, failed or rolled_back", [FieldError("status", "bad value")])
        try:
            datetime.fromisoformat(ack.ack_at.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("ack_at must be an RFC 3339 timestamp", [FieldError("ack_at", "not a timestamp")]) from None
        async with self.db.transaction() as conn:
            node = await self._lock(conn, node_id)
            issued = (node["metadata"] or {}).get("desired_config_version")
            if ack.config_version != issued:
                raise Conflict(f"config_version {ack.config_version} is not the latest issued ({issued})")
            services = msgspec.to_builtins(ack.managed_services_status) if ack.managed_services_status else None
            await conn.execute(q.RECORD_ACK, {
                "node_id": node_id, "ack_at": ack.ack_at, "status": ack.status,
                "error": ack.error.message if ack.error else None, "version": ack.config_version,
                "services": Jsonb(services) if services is not None else None,
            })
        log.info("node config acked", extra={"node_slug": node_slug, "config_version": ack.config_version,
                                             "status": ack.status})
        self.on_change()

    def expected_bearer(self, node_id: str, acked_version: str) -> str:
        return worker_bearer_token(self.secret_key, node_id, acked_version)

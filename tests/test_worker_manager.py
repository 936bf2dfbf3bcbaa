"""The node startup sequence against a real control plane (in-process and over real HTTP) and a real database."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import msgspec
import pytest

from cynode.config import Settings, load_settings
from cynode.contracts.node import InferenceBackendConfig, NodeConfig
from cynode.controlplane.inprocess import InProcessNodeControl
from cynode.controlplane.nodes import NodeRegistry
from cynode.controlplane.routes import controlplane_route_handlers
from cynode.db.pool import Database
from cynode.http.app import build_app
from cynode.http.health import Readiness
from cynode.http.server import Listener, bind
from cynode.worker.manager import NodeManager, effective_config_hash
from cynode.worker.orchestrator_client import HttpNodeControl, RegistrationRejected
from tests.support.fakes import ScriptedRuntime

PSK = "manager-test-psk-0123456789"


def node_settings(tmp_path, db_url: str, **env: str) -> Settings:
    return load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url,
                                "CYNODE_NODE_REGISTRATION_PSK": PSK, "NODE_SLUG": "node-a", **env})


def colocated(registry: NodeRegistry) -> SimpleNamespace:
    started = asyncio.Event()
    started.set()
    return SimpleNamespace(controlplane=SimpleNamespace(registry=registry), controlplane_started=started)


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_colocated_startup_registers_applies_and_becomes_ready(tmp_path, db_url: str,
                                                                    database: Database) -> None:
    s = node_settings(tmp_path, db_url)
    registry = NodeRegistry(s, database, b"k" * 40, b"j" * 40)
    orch = colocated(registry)
    runtime = ScriptedRuntime()
    manager = NodeManager(s, "node-a", InProcessNodeControl(orch), runtime, base_url=lambda: "http://127.0.0.1:1")
    assert manager.not_ready_reason() == "runtime_unavailable"
    await manager.start()
    try:
        await until(lambda: manager.not_ready_reason() is None)
        assert runtime.cleaned == 1
        assert manager.config is not None and manager.acked_version == manager.config.config_version
        token = manager.config.worker_api.orchestrator_bearer_token
        assert token and manager.check_bearer(token) and not manager.check_bearer("nope")
        async with database.connection() as conn:
            row = await (await conn.execute("SELECT config_version, config_ack_status FROM nodes")).fetchone()
        assert row == {"config_version": manager.acked_version, "config_ack_status": "applied"}
        gate = await manager.readiness_gate()
        assert gate.ok
    finally:
        await manager.stop()
    assert manager.not_ready_reason() == "draining"


async def test_runtime_failure_keeps_the_node_unready(tmp_path, db_url: str, database: Database) -> None:
    s = node_settings(tmp_path, db_url)
    orch = colocated(NodeRegistry(s, database, b"k" * 40, b"j" * 40))
    manager = NodeManager(s, "node-a", InProcessNodeControl(orch), ScriptedRuntime(ok=False),
                          base_url=lambda: "http://127.0.0.1:1")
    await manager.start()
    try:
        await until(lambda: manager.registered)
        gate = await manager.readiness_gate()
        assert not gate.ok and gate.reason_code == "runtime_unavailable" and "socket missing" in gate.message
        async with database.connection() as conn:
            snap = (await (await conn.execute("SELECT capability_snapshot FROM node_capabilities")).fetchone())
        assert snap["capability_snapshot"]["sandbox"]["supported"] is False
    finally:
        await manager.stop()


def _config(**kw) -> NodeConfig:
    doc = {"version": 1, "config_version": "01J00000000000000000000000", "issued_at": "x", "node_slug": "node-a",
           "orchestrator": {"base_url": "http://o", "endpoints": {"worker_api_target_url": "http://w",
                                                                  "node_report_url": "http://o/r"}},
           "worker_api": {"orchestrator_bearer_token": "t1"}, "unknown_future_field": {"ok": True}}
    doc.update(kw)
    return msgspec.convert(doc, NodeConfig)


@pytest.mark.parametrize(("change", "error"), [
    ({"version": 2}, "unsupported_payload_version"),
    ({"config_version": "not-a-ulid"}, "invalid_config"),
    ({"node_slug": "node-b"}, "node_slug_mismatch"),
    ({"worker_api": {}}, "invalid_config"),
])
async def test_apply_refuses_bad_configs(tmp_path, change, error) -> None:
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path)})
    m = NodeManager(s, "node-a", None, None, base_url=lambda: "")  # type: ignore[arg-type]
    ack = await m.apply(_config(**change))
    assert ack is not None and ack.status == "failed" and ack.error is not None and ack.error.type == error


async def test_apply_is_ordered_and_respects_local_constraints(tmp_path) -> None:
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_WORKER_INFERENCE_MODE": "disabled"})
    m = NodeManager(s, "node-a", None, None, base_url=lambda: "")  # type: ignore[arg-type]
    cfg = _config(inference_backend={"enabled": True})
    ack = await m.apply(cfg)
    assert ack is not None and ack.error is not None and ack.error.type == "local_constraint"
    ok = await m.apply(_config())
    assert ok is not None and ok.status == "applied" and ok.effective_config_hash == effective_config_hash(_config())
    assert "t1" not in ok.effective_config_hash
    m._activate(_config())
    assert await m.apply(_config()) is None  # same version: nothing to do
    assert await m.apply(_config(config_version="01H00000000000000000000000")) is None  # older: ignored
    newer = _config(config_version="01J00000000000000000000001", worker_api={"orchestrator_bearer_token": "t2"})
    m._activate(newer)
    assert m.check_bearer("t2") and m.check_bearer("t1")  # the previous token works for 30 s
    assert isinstance(newer.inference_backend, InferenceBackendConfig | None)


async def test_http_node_control_full_cycle(tmp_path, db_url: str, database: Database) -> None:
    """Registration, config, ack and heartbeat over real HTTP, plus the fatal 400 and the wrong-PSK retry."""
    services = SimpleNamespace(registry=None)
    app = build_app("cp", controlplane_route_handlers(lambda: services), readiness=Readiness())
    listener = Listener("cp", app, bind("127.0.0.1:0"))
    s = node_settings(tmp_path, db_url, ORCHESTRATOR_PUBLIC_URL=f"http://127.0.0.1:{listener.port}")
    services.registry = NodeRegistry(s, database, b"k" * 40, b"j" * 40)
    listener.start()
    await listener.started()
    try:
        url = f"http://127.0.0.1:{listener.port}"
        ws = node_settings(tmp_path, db_url, ORCHESTRATOR_URL=url)
        control = HttpNodeControl(ws, max_backoff_s=0.2)
        manager = NodeManager(ws, "node-a", control, ScriptedRuntime(), base_url=lambda: "http://127.0.0.1:2")
        await manager.start()
        await until(lambda: manager.not_ready_reason() is None)
        await manager.stop()
        await control.close()

        bad = node_settings(tmp_path, db_url, ORCHESTRATOR_URL=url, NODE_SLUG="node-b")
        fatal: list[str] = []
        m2 = NodeManager(bad, "Bad_Slug", HttpNodeControl(bad, max_backoff_s=0.2), ScriptedRuntime(),
                         base_url=lambda: "http://127.0.0.1:3", on_fatal=fatal.append)
        await m2.start()
        await until(lambda: bool(fatal))
        assert "registration refused" in fatal[0]
        await m2.stop()

        control3 = HttpNodeControl(node_settings(tmp_path, db_url, ORCHESTRATOR_URL=url,
                                                 CYNODE_NODE_REGISTRATION_PSK="wrong"), max_backoff_s=0.1)
        from tests.support.nodes import capability

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(control3.register(capability()), 0.5)  # keeps retrying, never succeeds
        await control3.close()
    finally:
        await listener.stop()


async def test_missing_psk_is_a_fatal_config_error(tmp_path) -> None:
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path)})
    from cynode.worker.orchestrator_client import read_psk

    with pytest.raises(RegistrationRejected, match="no registration PSK"):
        read_psk(s)
    f = tmp_path / "psk"
    f.write_text("secret\n")
    f.chmod(0o644)
    s2 = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_WORKER_REGISTRATION_PSK_FILE": str(f)})
    with pytest.raises(RegistrationRejected, match="chmod 600"):
        read_psk(s2)
    f.chmod(0o600)
    assert read_psk(s2) == "secret"


def test_unreachable_control_plane_is_waited_for(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "ORCHESTRATOR_URL": f"http://127.0.0.1:{port}"})

    async def go() -> None:
        control = HttpNodeControl(s)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(control.wait_reachable(), 1.5)
        await control.close()

    asyncio.run(go())

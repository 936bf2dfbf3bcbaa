"""`cynode serve` as a real process: role composition, config errors, health, readiness, graceful stop."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from cynode.errors import ConfigError
from cynode.serve import parse_roles
from tests.support.system import ServeProcess, cynode_cli


def test_parse_roles() -> None:
    assert parse_roles("all") == {"orchestrator", "worker", "pma"}
    assert parse_roles("orchestrator, pma") == {"orchestrator", "pma"}
    for bad in ("", "gateway", "worker,nope"):
        with pytest.raises(ConfigError):
            parse_roles(bad)


def test_orchestrator_serves_health_then_reports_what_is_missing(db_url: str) -> None:
    p = ServeProcess("orchestrator", env={"CYNODE_DATABASE_URL": db_url}).start()
    try:
        gw, cp = p.url("gateway"), p.url("controlplane")
        for base in (gw, cp):
            r = httpx.get(base + "/healthz")
            assert r.status_code == 200 and r.text == "ok"
        p.wait_accepting()
        r = httpx.get(gw + "/readyz")
        assert r.status_code == 503 and r.text.startswith("not ready: no_inference_path: ")
        doc = p.readiness("controlplane")
        assert doc["checks"][0] == {"name": "database", "ok": True}
        assert doc["reason_code"] == "no_inference_path"
        # No trusted proxies configured: a client cannot choose the address its login attempts are counted under.
        r = httpx.post(gw + "/v1/auth/login", json={"handle": "admin", "password": "wrong-password"},
                       headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 401
        with psycopg.connect(db_url) as conn:
            ips = conn.execute("SELECT host(ip_address) FROM auth_audit_log WHERE event_type = 'login_failure'")
            assert [row[0] for row in ips] == ["127.0.0.1"]
    finally:
        assert p.stop() == 0
    assert '"msg": "stopped"' in p.log()


def test_unknown_key_or_bad_port_exits_2_before_starting(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[gateway]\nlisten_addr = "127.0.0.1:0"\nlisten_port = 5\n')
    r = cynode_cli("serve", "--config", str(cfg), env={"CYNODE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: config: {cfg}: gateway.listen_port: unknown key"]
    cfg.write_text('[controlplane]\nlisten_addr = "127.0.0.1:123456"\n')
    r = cynode_cli("serve", "--config", str(cfg), env={"CYNODE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "port 123456 out of range" in r.stderr
    assert not (tmp_path / "postgres").exists()  # nothing was started


def test_pma_alone_needs_a_role(tmp_path) -> None:
    r = cynode_cli("serve", "--role", "pma", env={"CYNODE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "--pma-role=project_manager" in r.stderr


def test_port_in_use_exits_2(tmp_path, db_url: str) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = cynode_cli("serve", "--role", "orchestrator",
                       env={"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url,
                            "CYNODE_GATEWAY_LISTEN_ADDR": f"127.0.0.1:{port}"})
    finally:
        s.close()
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_version_and_help() -> None:
    r = cynode_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("cynode ")
    r = cynode_cli("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "db" in r.stdout

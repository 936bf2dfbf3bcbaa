"""The orchestrator's PostgreSQL goes away and comes back, with `cynode serve` running as a real process: requests in
between are refused with 503 and Retry-After (orchestrator.md §2, §4: "503 DB down"), never a 500, readiness says why,
and once the database is back the same process serves again with nothing accepted before lost. In embedded mode the
orchestrator brings a dead PostgreSQL back itself."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.system import ServeProcess

PASSWORD = "outage-admin-password"


@pytest.fixture
def own_postgres() -> Iterator[tuple[Path, str]]:
    """A PostgreSQL this test may stop and start (the session's one is shared)."""
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="cynode-outage-"))
    server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE cynode_outage")
    try:
        yield root / "pg", server.get_uri("cynode_outage")
    finally:
        pgserver.get_server(root / "pg", cleanup_mode="stop").cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_requests_get_503_while_the_database_is_down_and_work_again_after(own_postgres: tuple[Path, str],
                                                                          tmp_path: Path) -> None:
    import pgserver

    pgdir, url = own_postgres
    serve = ServeProcess("orchestrator", name="outage", data_dir=tmp_path / "data", env={
        "CYNODE_DATABASE_URL": url, "CYNODE_ADMIN_PASSWORD": PASSWORD, "CYNODE_DB_CONNECT_TIMEOUT_S": "1"}).start()
    try:
        serve.wait_accepting()
        base = serve.url("gateway")
        h = serve.auth_headers(PASSWORD)
        before = httpx.post(base + "/v1/tasks", json={"prompt": "accepted before the outage"}, headers=h, timeout=30)
        assert before.status_code == 201

        pgserver.get_server(pgdir, cleanup_mode="stop").cleanup()  # the last handle: the server stops
        for method, path, body in (("GET", "/v1/tasks", None), ("POST", "/v1/tasks", {"prompt": "during"}),
                                   ("GET", f"/v1/tasks/{before.json()['id']}", None)):
            r = httpx.request(method, base + path, json=body, headers=h, timeout=30)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == "urn:cynodeai:error:service_unavailable"
            assert r.json()["instance"] == r.headers["x-request-id"]
        r = httpx.post(base + "/v1/chat/completions", headers=h, timeout=30,
                       json={"model": "cynodeai.pm", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.json()["error"]["code"], r.text
        ready = httpx.get(base + "/readyz", timeout=30)
        assert ready.status_code == 503 and "database" in ready.text
        assert httpx.get(base + "/healthz", timeout=30).status_code == 200  # alive, just not ready

        pgserver.get_server(pgdir, cleanup_mode="stop")  # back, at the same place
        deadline = time.monotonic() + 60
        while (r := httpx.get(base + "/v1/tasks", headers=h, timeout=30)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        prompts = [t["task_name"] for t in r.json()["tasks"]]
        assert prompts == ["accepted-before-the-outage"]  # the accepted task is there; the refused one is not
        assert httpx.post(base + "/v1/tasks", json={"prompt": "after"}, headers=h, timeout=30).status_code == 201
        assert "unhandled" not in serve.log()  # no request took the internal-error path
    finally:
        serve.stop()


def test_the_embedded_postgres_is_restarted_when_it_dies(tmp_path: Path) -> None:
    """Embedded mode (no database URL): the postmaster killed (as the OOM killer would) comes back by itself, crash
    recovery keeps what was committed, and the same process serves again."""
    import os
    import signal

    serve = ServeProcess("orchestrator", name="pgdies", data_dir=tmp_path, env={
        "CYNODE_ADMIN_PASSWORD": PASSWORD, "CYNODE_DB_CONNECT_TIMEOUT_S": "1"}).start()
    try:
        serve.wait_accepting()
        base = serve.url("gateway")
        h = serve.auth_headers(PASSWORD)
        made = httpx.post(base + "/v1/tasks", json={"prompt": "committed before the crash"}, headers=h, timeout=30)
        assert made.status_code == 201
        pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGKILL)

        deadline = time.monotonic() + 60
        while (r := httpx.get(f"{base}/v1/tasks/{made.json()['id']}", headers=h, timeout=30)).status_code != 200:
            assert r.status_code == 503, r.text  # refused while it is down, never a 500
            assert time.monotonic() < deadline, "the embedded PostgreSQL did not come back"
            time.sleep(0.5)
        assert r.json()["prompt"] == "committed before the crash"
        assert int((tmp_path / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0]) != pid
        assert "embedded PostgreSQL restarted" in serve.log()
    finally:
        serve.stop()

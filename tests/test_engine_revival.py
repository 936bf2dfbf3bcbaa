"""The Podman service a worker started dies under a running `cynode serve`: the next job is refused with 503 before
anything ran (so the orchestrator requeues it without costing an attempt), the worker restarts the service at the
same socket, and that job and later ones complete. Real processes, real Podman."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.system import ServeProcess

pytestmark = pytest.mark.podman

PASSWORD = "revival-admin-password"


def run_task(base: str, h: dict[str, str], command: str, timeout: float = 90.0) -> dict:
    made = httpx.post(base + "/v1/tasks", json={"input_mode": "commands", "commands": [command]}, headers=h,
                      timeout=30).json()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = httpx.get(f"{base}/v1/tasks/{made['id']}/result", headers=h, timeout=30).json()
        if result["status"] in ("completed", "failed", "canceled"):
            return result
        time.sleep(0.3)
    raise TimeoutError(f"task {made['id']} did not finish")


def test_a_dead_podman_service_is_restarted_and_no_job_is_lost(tmp_path: Path, db_url: str) -> None:
    serve = ServeProcess("orchestrator,worker", name="revival", data_dir=tmp_path, env={
        "CYNODE_DATABASE_URL": db_url, "CYNODE_ADMIN_PASSWORD": PASSWORD, "CYNODE_WORKER_INFERENCE_MODE": "disabled",
        "CYNODE_NODE_REGISTRATION_PSK": "revival-psk-0123456789abcdef"}).start()
    try:
        serve.wait_ready(listener="worker", timeout=180)
        base = serve.url("gateway")
        h = serve.auth_headers(PASSWORD)
        before = run_task(base, h, "echo before")
        assert before["status"] == "completed"

        pid_file = tmp_path / "worker" / "podman" / "service.pid"
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

        after = run_task(base, h, "echo after")
        assert after["status"] == "completed", after
        with psycopg.connect(db_url, autocommit=True) as conn:
            attempts = [conn.execute("SELECT attempt FROM jobs WHERE id = %s", (t["jobs"][0]["id"],)).fetchone()[0]
                        for t in (before, after)]
        assert attempts[1] == attempts[0]  # the refused dispatch cost the job no attempt
        assert httpx.get(serve.url("worker") + "/readyz", timeout=10).status_code == 200
        assert run_task(base, h, "echo later")["status"] == "completed"
        log = serve.log()
        assert "job refused" in log and "restarted the podman service" in log
        assert (tmp_path / "worker" / "podman" / "service.log.1").exists()  # the dead service's log is kept
    finally:
        serve.stop()

"""End-to-end latency of a commands-mode `true` task (HTTP create -> scheduler -> worker -> Podman -> result)
beside a raw `podman run --rm` of the same image, interleaved in the same run."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx

from bench.report import median, pct, row
from cynode.worker.podman import podman_env
from tests.support.system import ServeProcess

IMAGE = "localhost/cynode-sandbox:0.1"
RUNS = 15
ADMIN_PASSWORD = "bench-admin-password"


def _raw() -> float:
    t0 = time.perf_counter()
    subprocess.run(["podman", "run", "--rm", IMAGE, "true"], env=podman_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _task(client: httpx.Client) -> float:
    t0 = time.perf_counter()
    r = client.post("/v1/tasks", json={"input_mode": "commands", "commands": ["true"]})
    r.raise_for_status()
    task_id = r.json()["id"]
    while True:
        doc = client.get(f"/v1/tasks/{task_id}").json()
        if doc["closed"]:
            assert doc["status"] == "completed", doc
            return time.perf_counter() - t0
        time.sleep(0.005)


def run() -> None:
    if shutil.which("podman") is None:
        print("   skipped: podman is not installed")
        return
    system = ServeProcess("all", name="bench-e2e", env={
        "CYNODE_ADMIN_PASSWORD": ADMIN_PASSWORD, "CYNODE_NODE_REGISTRATION_PSK": "bench-e2e-psk-0123456789abcdef",
        "NODE_SLUG": "bench", "CYNODE_LOGGING_LEVEL": "warning", "CYNODE_WORKER_INFERENCE_MODE": "disabled"}).start()
    try:
        system.wait_ready(listener="worker", timeout=120)
        base = system.url("gateway")
        with httpx.Client(base_url=base, headers=system.auth_headers(ADMIN_PASSWORD), timeout=60) as client:
            _task(client)  # warm-up: first container start, connections
            _raw()
            ours, raw = [], []
            for _ in range(RUNS):
                ours.append(_task(client))
                raw.append(_raw())
    finally:
        system.stop()
        shutil.rmtree(system.dir, ignore_errors=True)
    b = median(raw) * 1000
    row(f"commands-mode `true` task, create -> completed (p50 of {RUNS})", median(ours) * 1000, "ms", baseline=b,
        goal="ratio <= 1.25")
    row("  same, p90", pct(ours, 90) * 1000, "ms", baseline=pct(raw, 90) * 1000)

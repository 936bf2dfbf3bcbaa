"""Sandbox job latency: the runtime's run() of `true` (all §6 options, dirs, cleanup) beside a raw `podman run`.

Baseline: `podman run --rm <same image> true` through the podman CLI, same storage, interleaved with our runs in the
same process so machine noise hits both alike.  Our figure is the whole job: image check, job dirs, create with
every sandbox option, attach, start, exit, remove container and dirs.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.report import pct, row
from cynode.config import WorkerSandbox
from cynode.contracts.sandbox import SandboxRequest
from cynode.worker import image
from cynode.worker.podman import DockerEndpoint, podman_env
from cynode.worker.runtime.docker_api import DockerApiRuntime

IMAGE = "localhost/cynode-sandbox:0.1"
RUNS = 15
WARMUP = 2


def _raw_podman_run() -> float:
    t0 = time.perf_counter()
    subprocess.run(["podman", "run", "--rm", IMAGE, "true"], env=podman_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


async def _measure(rt: DockerApiRuntime) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    raw: list[float] = []
    for i in range(WARMUP + RUNS):
        req = SandboxRequest(task_id="bench", job_id=str(uuid.uuid4()), image=IMAGE, command=["true"], timeout_s=60)
        t0 = time.perf_counter()
        outcome = await rt.run(req)
        took = time.perf_counter() - t0
        if outcome.status != "completed":
            raise RuntimeError(f"sandbox run failed: {outcome.error or outcome.stderr}")
        raw_took = await asyncio.to_thread(_raw_podman_run)
        if i >= WARMUP:
            ours.append(took)
            raw.append(raw_took)
    return ours, raw


def run() -> None:
    if shutil.which("podman") is None:
        print("   skipped: podman is not installed")
        return
    image.ensure(IMAGE)
    state = Path(tempfile.mkdtemp(prefix="cynode-bench-sandbox-"))
    endpoint = DockerEndpoint(WorkerSandbox(), state)
    url = endpoint.start_sync()
    rt = DockerApiRuntime(url, node_slug="bench", sandbox=WorkerSandbox(), mount_root=state / "mounts")

    async def main() -> tuple[list[float], list[float]]:
        try:
            return await _measure(rt)
        finally:
            await rt.close()

    try:
        ours, raw = asyncio.run(main())
    finally:
        endpoint.stop_sync()
        shutil.rmtree(state, ignore_errors=True)
    base = pct(raw, 50) * 1000
    row(f"runtime.run(true) p50 of {RUNS} (vs podman run --rm true)", pct(ours, 50) * 1000, "ms", baseline=base,
        goal="ratio <= 1.25")
    row("runtime.run(true) p90", pct(ours, 90) * 1000, "ms", baseline=pct(raw, 90) * 1000)

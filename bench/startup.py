"""Cold start of `cynode serve --role all` to /healthz, and its idle RSS (no model loaded).

Baseline: a bare litestar app under uvicorn (the same server stack) started the same way, in the same run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from bench.report import free_port, median, row
from tests.support.system import ServeProcess

RUNS = 5

BARE_APP = textwrap.dedent("""
    import uvicorn
    from litestar import Litestar, get

    @get("/healthz", media_type="text/plain", sync_to_thread=False)
    def healthz() -> str:
        return "ok"

    uvicorn.run(Litestar([healthz]), host="127.0.0.1", port={port}, log_level="warning")
""")



def _wait_200(url: str, proc: subprocess.Popen[bytes], t0: float) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.005)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _bare() -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP.replace("{port}", str(port))])
    try:
        return _wait_200(f"http://127.0.0.1:{port}/healthz", proc, t0)
    finally:
        proc.terminate()
        proc.wait()


def _cynode(data_dir: str, port: int, *, model: bool = False) -> tuple[float, float, float, float]:
    env = {**os.environ, "CYNODE_DATA_DIR": data_dir, "CYNODE_GATEWAY_LISTEN_ADDR": f"127.0.0.1:{port}",
           "CYNODE_CONTROLPLANE_LISTEN_ADDR": "127.0.0.1:0", "CYNODE_WORKER_LISTEN_ADDR": "127.0.0.1:0",
           "CYNODE_LOGGING_LEVEL": "warning", "CYNODE_NODE_REGISTRATION_PSK": "bench-startup-psk-0123456789"}
    if not model:  # "without a model": the node never starts its model server
        env["CYNODE_WORKER_INFERENCE_MODE"] = "disabled"
    env.pop("COVERAGE_PROCESS_START", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cynode", "serve", "--role", "all"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        healthz = _wait_200(f"http://127.0.0.1:{port}/healthz", proc, t0)
        while httpx.get(f"http://127.0.0.1:{port}/v1/__probe", timeout=2).status_code == 503:
            time.sleep(0.01)
        accepting = time.perf_counter() - t0
        time.sleep(2.0)  # let start-up settle, then read idle RSS
        rss = _rss_mb(proc.pid)
        pg = _postgres_rss(data_dir)
        return healthz, accepting, rss, pg
    finally:
        proc.terminate()
        proc.wait(30)


def _postgres_rss(data_dir: str) -> float:
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmd and data_dir in cmd:
            total += _rss_mb(int(pid))
    return total


def run() -> None:
    ServeProcess  # noqa: B018 - keep the harness import (same interpreter and package as the tests)
    bare = [_bare() for _ in range(RUNS)]
    first_dir = tempfile.mkdtemp(prefix="cynode-bench-")
    try:
        port = free_port()
        first = _cynode(first_dir, port)  # includes initdb of the embedded PostgreSQL
        warm = [_cynode(first_dir, free_port()) for _ in range(RUNS)]
        with_model = _cynode(first_dir, free_port(), model=True)
    finally:
        shutil.rmtree(first_dir, ignore_errors=True)
    b = median(bare) * 1000
    row("first start (initdb) -> /healthz", first[0] * 1000, "ms", baseline=b, goal="<= 3000 ms")
    row("first start (initdb) -> API accepting (DB+migrations)", first[1] * 1000, "ms")
    row(f"restart -> /healthz (median of {RUNS})", median([w[0] for w in warm]) * 1000, "ms", baseline=b,
        goal="<= 3000 ms")
    row("restart -> API accepting (median)", median([w[1] for w in warm]) * 1000, "ms")
    row("idle RSS of serve --role all (no model)", median([w[2] for w in warm]), "MB", goal="<= 200 MB")
    row("  context: the same with the built-in model loaded", with_model[2], "MB")
    row("idle RSS of the embedded PostgreSQL (all procs)", median([w[3] for w in warm]), "MB")

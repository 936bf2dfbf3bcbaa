"""Authenticated `GET /v1/tasks/{id}` on the gateway: requests/s and p99 at 32 connections.

Baseline: a bare litestar endpoint returning a small msgspec struct under uvicorn (httptools + uvloop, as `serve`),
measured in the same run with the same load generator (wrk when installed, else an aiohttp generator in its own
process). Each gateway request authenticates against the database (session + user + roles) and reads the task; the
lookups of requests that arrive together share one query each (cynode/db/coalesce.py), and audit rows go to the
background batch writer. The three endpoints run side by side and take turns under load (ROUNDS short runs each),
so that this VM's speed drifting during the run, which is common, hits them alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.report import free_port, median, pct, python_app, row
from tests.support.system import ServeProcess

CONNECTIONS = 32
DURATION_S = 10
WARMUP_S = 3
ADMIN_PASSWORD = "bench-admin-password"

BARE_APP = textwrap.dedent("""
    import msgspec, uvicorn
    from litestar import Litestar, get

    class Task(msgspec.Struct):
        id: str
        task_name: str
        status: str
        closed: bool

    @get("/v1/tasks/{task_id:str}", sync_to_thread=False)
    def read(task_id: str) -> Task:
        return Task(id=task_id, task_name="bench", status="queued", closed=False)

    uvicorn.run(Litestar([read]), host="127.0.0.1", port={port}, log_level="warning", http="httptools",
                loop="uvloop", access_log=False)
""")

# Two trivial queries per request, each on its own round trip (session check, task read, done naively): printed for
# context, it shows what coalescing the lookups buys.
FLOOR_APP = textwrap.dedent("""
    import asyncio, msgspec, sys, uvicorn
    from litestar import Litestar, get
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(sys.argv[1], min_size=2, max_size=10, open=False,
                               kwargs={"autocommit": True, "row_factory": dict_row})

    class Task(msgspec.Struct):
        id: str

    @get("/v1/tasks/{task_id:str}")
    async def read(task_id: str) -> Task:
        for _ in range(2):
            async with pool.connection() as conn:
                await (await conn.execute("SELECT 1")).fetchone()
        return Task(id=task_id)

    async def up() -> None:
        await pool.open(wait=True)

    uvicorn.run(Litestar([read], on_startup=[up]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                http="httptools", loop="uvloop", access_log=False)
""")

AIOHTTP_GEN = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, headers, conns, duration):
        lat = []
        stop = time.perf_counter() + duration
        async def worker(session):
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append(time.perf_counter() - t)
        conn = aiohttp.TCPConnector(limit=conns)
        async with aiohttp.ClientSession(connector=conn) as s:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(s) for _ in range(conns)))
            elapsed = time.perf_counter() - t0
        print(json.dumps({"rps": len(lat) / elapsed, "lat": sorted(lat)}))

    url, headers, conns, duration = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(url, headers, conns, duration))
""")

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}



def _wrk(url: str, headers: dict[str, str], duration: float) -> tuple[float, float]:
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{int(duration)}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * _UNITS[m.group(2)]  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses during the run:\n{out}")
    return rps, p99


def _aiohttp(url: str, headers: dict[str, str], duration: float) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", AIOHTTP_GEN, url, json.dumps(headers), str(CONNECTIONS),
                          str(duration)], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    return float(doc["rps"]), pct(doc["lat"], 99) * 1000


ROUNDS = 5
ROUND_S = 4


def measure_alternating(targets: dict[str, tuple[str, dict[str, str]]]) -> dict[str, tuple[float, float]]:
    """Median requests/s and median p99 per target over ROUNDS short runs, one run per target in turn (the order
    rotating), so that this VM's speed drifting during the run hits every target alike."""
    load = _wrk if shutil.which("wrk") else _aiohttp
    for url, headers in targets.values():
        load(url, headers, WARMUP_S)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(ROUNDS):
        for name in names[i % len(names):] + names[:i % len(names)]:
            url, headers = targets[name]
            runs[name].append(load(url, headers, ROUND_S))
    return {name: (median([r for r, _ in rs]), median([p for _, p in rs])) for name, rs in runs.items()}


@contextlib.contextmanager
def _bare(db_url: str | None = None) -> Iterator[str]:
    port = free_port()
    args = ["-c", FLOOR_APP, db_url, str(port)] if db_url else ["-c", BARE_APP.replace("{port}", str(port))]
    url = f"http://127.0.0.1:{port}/v1/tasks/8d6d2f3c-0a0e-4b8e-9a43-1f1f7f1d2c3b"
    with python_app(args, lambda: httpx.get(url, timeout=1).raise_for_status()):
        yield url


def _measure_all() -> dict[str, tuple[float, float]]:
    data_dir = tempfile.mkdtemp(prefix="cynode-bench-gw-")
    env = {"CYNODE_ADMIN_PASSWORD": ADMIN_PASSWORD, "CYNODE_GATEWAY_USER_RATE_PER_MIN": "0",
           "CYNODE_LOGGING_LEVEL": "warning", "CYNODE_LOGGING_FORMAT": "json"}
    os.environ.pop("COVERAGE_PROCESS_START", None)
    p = ServeProcess("orchestrator", name="bench-gw", data_dir=data_dir, env=env).start()
    try:
        p.wait_accepting(120)
        base = p.url("gateway")
        headers = p.auth_headers(ADMIN_PASSWORD)
        task = httpx.post(base + "/v1/tasks", json={"prompt": "bench me"}, headers=headers, timeout=30)
        task.raise_for_status()
        gateway = (f"{base}/v1/tasks/{task.json()['id']}", headers)
        import pgserver  # attach to the gateway's embedded server for the floor endpoint, and let go of it after

        pg = pgserver.get_server(Path(data_dir) / "postgres", cleanup_mode="stop")
        try:
            with _bare() as bare, _bare(str(pg.get_uri("cynode"))) as floor:
                return measure_alternating({"bare": (bare, {}), "gateway": gateway, "floor": (floor, {})})
        finally:
            pg.cleanup()
    finally:
        p.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def run() -> None:
    res = _measure_all()
    (bare_rps, bare_p99), (gw_rps, gw_p99), (floor_rps, floor_p99) = res["bare"], res["gateway"], res["floor"]
    tool = "wrk" if shutil.which("wrk") else "aiohttp"
    row(f"GET /v1/tasks/{{id}} authenticated ({tool}, {CONNECTIONS} conns, median of {ROUNDS}x{ROUND_S} s)", gw_rps,
        "req/s", baseline=bare_rps, goal=">= 0.5 of bare")
    row("  p99 latency", gw_p99, "ms", baseline=bare_p99, goal="<= 25 ms")
    row("  context: bare endpoint + 2x SELECT 1 per request, uncoalesced", floor_rps, "req/s", baseline=bare_rps)
    row("  context: its p99", floor_p99, "ms", baseline=bare_p99)
    row("  gateway vs that uncoalesced endpoint", gw_rps, "req/s", baseline=floor_rps)

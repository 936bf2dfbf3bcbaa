"""Chat completions through the gateway: the latency the gateway adds over calling the model server directly.

The built-in model server runs in its own process; `cynode serve --role orchestrator` points its direct-inference
path at it (`[inference] url`, `model = gemma3:270m`). The same short completion (`max_tokens` 1, temperature 0, a
fixed seed, so the model's own time is the same everywhere) is sent REQUESTS times per side, sequentially over
keep-alive connections, one request per side in turn: `POST /v1/chat/completions` on the gateway (authenticated, the
user message stored under the thread lock, routed, the answer stored, audited), `POST /api/chat` straight to the
model server (the very call the gateway makes; the baseline) and, for context, `POST /v1/chat/completions` straight
to it, and a bare litestar endpoint that only passes the call on (the least any gateway adds).
The difference of the percentiles is the gateway's added latency. Last, for context, the cost of one commit round
trip to the gateway's PostgreSQL, back to back and after a pause as long as the model's turn: a chat turn makes three
(the session check, the user message before routing, the answer before responding).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.report import free_port, median, pct, python_app, row
from tests.support.system import ServeProcess

MODEL = "gemma3:270m"
REQUESTS = 400
WARMUP = 20
COMMITS = 200
ADMIN_PASSWORD = "bench-admin-password"
# Two non-system messages: the gateway forwards them as they are (a single message would get the thread history).
BODY = {"model": MODEL, "max_tokens": 1, "temperature": 0, "seed": 1234, "messages": [
    {"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name one colour."}]}
# The same request in the Ollama API, which is what the gateway itself sends the model server.
OLLAMA_BODY = {"model": MODEL, "stream": False, "messages": BODY["messages"],
               "options": {"num_predict": 1, "temperature": 0, "seed": 1234}}

MODEL_SERVER = textwrap.dedent("""
    import asyncio, os, sys
    from cynode.config import load_settings
    from cynode.inference.server import EmbeddedModelServer

    async def main():
        server = EmbeddedModelServer(load_settings(None, dict(os.environ)).worker.inference)
        print(await server.start("127.0.0.1:0"), flush=True)
        await server.load(sys.argv[1])
        print("loaded", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


# Context: the least a gateway can add. A bare litestar endpoint (uvicorn, httptools, uvloop, as `serve`) that passes
# the same completion to the model server over a kept-alive aiohttp session and returns its answer: no auth, no
# database, no audit.
PROXY_APP = textwrap.dedent("""
    import sys, aiohttp, msgspec, uvicorn
    from litestar import Litestar, Request, post

    UPSTREAM = sys.argv[1]
    http = None

    @post("/v1/chat/completions", status_code=200)
    async def complete(request: Request) -> dict:
        global http
        body = msgspec.json.decode(await request.body())
        http = http or aiohttp.ClientSession()
        upstream = {"model": body["model"], "messages": body["messages"], "stream": False,
                    "options": {"num_predict": body["max_tokens"], "temperature": body["temperature"],
                                "seed": body["seed"]}}
        async with http.post(UPSTREAM + "/api/chat", data=msgspec.json.encode(upstream),
                             headers={"Content-Type": "application/json"}) as r:
            answer = msgspec.json.decode(await r.read())
        return {"object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": answer["message"], "finish_reason": "length"}]}

    uvicorn.run(Litestar([complete]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                http="httptools", loop="uvloop", access_log=False)
""")


async def _timed(http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str],
                 n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.post(url, json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url} answered {r.status}: {(await r.text())[:300]}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _measure(model_url: str, gateway_url: str, headers: dict[str, str], proxy_url: str) -> dict[str, list[float]]:
    sides = {  # name -> (url, body, headers)
        "gateway": (gateway_url + "/v1/chat/completions", BODY, headers),
        "api_chat": (model_url + "/api/chat", OLLAMA_BODY, {}),
        "openai": (model_url + "/v1/chat/completions", BODY, {}),
        "proxy": (proxy_url + "/v1/chat/completions", BODY, {}),
    }
    out: dict[str, list[float]] = {name: [] for name in sides}
    async with aiohttp.ClientSession() as http:
        for url, body, hdrs in sides.values():
            await _timed(http, url, body, hdrs, WARMUP)
        names = list(sides)
        for i in range(REQUESTS):  # one request per side in turn, the order rotating, so drift hits every side alike
            k = i % len(names)
            for name in names[k:] + names[:k]:
                url, body, hdrs = sides[name]
                out[name] += await _timed(http, url, body, hdrs, 1)
    return out


def _model_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", MODEL_SERVER, MODEL], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if proc.stdout.readline().strip() != "loaded":
        proc.kill()
        raise RuntimeError("the model server did not load the model")
    return proc, url


@contextlib.contextmanager
def _proxy(model_url: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with python_app(["-c", PROXY_APP, model_url, str(port)],
                    lambda: httpx.post(url + "/v1/chat/completions", json=BODY, timeout=30).raise_for_status()):
        yield url


async def _commit_round_trips(db_url: str) -> tuple[list[float], list[float]]:
    """One-row INSERT commits on the gateway's database: back to back, and each after a 3 ms pause (about the
    model's time in a chat turn, during which PostgreSQL's CPU goes idle)."""
    import psycopg

    out: tuple[list[float], list[float]] = ([], [])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE bench_commit (v int)")  # not TEMP: those commit without a WAL flush
        try:
            for i in range(2 * COMMITS):
                if i % 2:
                    await asyncio.sleep(0.003)
                t0 = time.perf_counter()
                await conn.execute("INSERT INTO bench_commit VALUES (1)")
                out[i % 2].append((time.perf_counter() - t0) * 1000)
        finally:
            await conn.execute("DROP TABLE bench_commit")
    return out


def run() -> None:
    os.environ.pop("COVERAGE_PROCESS_START", None)
    server, model_url = _model_server()
    data_dir = tempfile.mkdtemp(prefix="cynode-bench-chat-")
    gw = ServeProcess("orchestrator", name="bench-chat", data_dir=data_dir, env={
        "CYNODE_ADMIN_PASSWORD": ADMIN_PASSWORD, "CYNODE_GATEWAY_USER_RATE_PER_MIN": "0",
        "CYNODE_LOGGING_LEVEL": "warning", "CYNODE_LOGGING_FORMAT": "json",
        "INFERENCE_URL": model_url, "INFERENCE_MODEL": MODEL})
    try:
        gw.start()
        gw.wait_accepting(120)
        base = gw.url("gateway")
        headers = gw.auth_headers(ADMIN_PASSWORD)
        with _proxy(model_url) as proxy_url:
            times = asyncio.run(_measure(model_url, base, headers, proxy_url))
        import pgserver  # attach to the gateway's embedded server, and let go of it after

        pg = pgserver.get_server(Path(data_dir) / "postgres", cleanup_mode="stop")
        try:
            hot, paused = asyncio.run(_commit_round_trips(str(pg.get_uri("cynode"))))
        finally:
            pg.cleanup()
    finally:
        gw.stop()
        server.terminate()
        server.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
    via, direct, openai, proxy = times["gateway"], times["api_chat"], times["openai"], times["proxy"]
    row(f"chat completion via the gateway p50 (N={len(via)}, {MODEL}, 1 token)", median(via), "ms",
        baseline=median(direct), ratio_note="vs the same call straight to the model server")
    row("  p99", pct(via, 99), "ms", baseline=pct(direct, 99))
    row("  gateway added latency p50 (vs POST /api/chat direct)", median(via) - median(direct), "ms",
        goal="<= 3 ms")
    row("  gateway added latency p99 (vs POST /api/chat direct)", pct(via, 99) - pct(direct, 99), "ms",
        goal="<= 15 ms")
    row("  context: a bare litestar proxy to the same call adds p50", median(proxy) - median(direct), "ms")
    row("  context: a commit round trip to PostgreSQL, back to back p50", median(hot), "ms")
    row("  context: the same after a 3 ms pause p50 (the gateway makes 3 per turn)", median(paused), "ms")
    row("  context: added p50 vs POST /v1/chat/completions direct", median(via) - median(openai), "ms")
    row("  context: added p99 vs POST /v1/chat/completions direct", pct(via, 99) - pct(openai, 99), "ms")

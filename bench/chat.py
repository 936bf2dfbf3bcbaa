"""Chat completions through the gateway: the latency the gateway adds over calling the model server directly.

The built-in model server runs in its own process; `cynode serve --role orchestrator` points its direct-inference
path at it (`[inference] url`, `model = gemma3:270m`). The same short completion (`max_tokens` 1, temperature 0, a
fixed seed, so the model's own time is the same everywhere) is sent REQUESTS times per side, sequentially over
keep-alive connections, one request per side in turn: `POST /v1/chat/completions` on the gateway (authenticated, the
user message stored under the thread lock, routed, the answer stored, audited), `POST /api/chat` straight to the
model server (the very call the gateway makes; the baseline) and, for context, `POST /v1/chat/completions` straight
to it.
The difference of the percentiles is the gateway's added latency.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

import aiohttp
import httpx

from bench.report import median, pct, row
from tests.support.system import ServeProcess

MODEL = "gemma3:270m"
REQUESTS = 400
WARMUP = 20
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


async def _measure(model_url: str, gateway_url: str, headers: dict[str, str]) -> dict[str, list[float]]:
    sides = {  # name -> (url, body, headers)
        "gateway": (gateway_url + "/v1/chat/completions", BODY, headers),
        "api_chat": (model_url + "/api/chat", OLLAMA_BODY, {}),
        "openai": (model_url + "/v1/chat/completions", BODY, {}),
    }
    out: dict[str, list[float]] = {name: [] for name in sides}
    async with aiohttp.ClientSession() as http:
        for url, body, hdrs in sides.values():
            await _timed(http, url, body, hdrs, WARMUP)
        names = list(sides)
        for i in range(REQUESTS):  # one request per side in turn, the order rotating, so drift hits every side alike
            for name in names[i % 3:] + names[:i % 3]:
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
        login = httpx.post(base + "/v1/auth/login", json={"handle": "admin", "password": ADMIN_PASSWORD}, timeout=30)
        login.raise_for_status()
        headers = {"Authorization": "Bearer " + login.json()["access_token"]}
        times = asyncio.run(_measure(model_url, base, headers))
    finally:
        gw.stop()
        server.terminate()
        server.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
    via, direct, openai = times["gateway"], times["api_chat"], times["openai"]
    row(f"chat completion via the gateway p50 (N={len(via)}, {MODEL}, 1 token)", median(via), "ms",
        baseline=median(direct), ratio_note="vs the same call straight to the model server")
    row("  p99", pct(via, 99), "ms", baseline=pct(direct, 99))
    row("  gateway added latency p50 (vs POST /api/chat direct)", median(via) - median(direct), "ms",
        goal="<= 3 ms")
    row("  gateway added latency p99 (vs POST /api/chat direct)", pct(via, 99) - pct(direct, 99), "ms",
        goal="<= 15 ms")
    row("  context: added p50 vs POST /v1/chat/completions direct", median(via) - median(openai), "ms")
    row("  context: added p99 vs POST /v1/chat/completions direct", pct(via, 99) - pct(openai, 99), "ms")

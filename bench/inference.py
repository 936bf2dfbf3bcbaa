"""Built-in model server throughput, and the per-job inference proxy's added latency.

(a) Tokens/s of `/api/generate` (non-streaming, end to end over HTTP) beside llama-cpp-python called directly on the
    same GGUF with the same prompt, sampling parameters and seed, in the same run (interleaved, median of RUNS).
(b) Latency of a small request (GET /api/version on the built-in server) through the Unix-socket proxy vs. direct to
    the same upstream over loopback TCP, keep-alive connections on both sides.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.report import median, pct, row
from cynode.config import WorkerInference
from cynode.inference.prompt import Turn, gemma_prompt
from cynode.inference.server import EmbeddedModelServer
from cynode.worker.inference_proxy import InferenceProxy

MODEL = "gemma3:270m"
RUNS = 15  # one run is ~2 s and single runs here swing by +-15% as the VM drifts: many, interleaved
NUM_PREDICT = 128
N_CTX = 2048
SEED = 1234
PROMPT = gemma_prompt([Turn("user", "Write a long, detailed story about a lighthouse keeper and a storm.")])
# Ollama's sampler defaults, spelled out so both sides use the same ones.
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1}
LATENCY_REQUESTS = 500


async def _server_run(http: aiohttp.ClientSession, url: str, *, stream: bool = False) -> float:
    body = {"model": MODEL, "prompt": PROMPT, "raw": True, "stream": stream,
            "options": {**SAMPLING, "seed": SEED, "num_predict": NUM_PREDICT}}
    t0 = time.perf_counter()
    async with http.post(url + "/api/generate", json=body) as r:
        lines = (await r.read()).splitlines()
    return int(json.loads(lines[-1])["eval_count"]) / (time.perf_counter() - t0)


def _direct_run(llm: object) -> float:
    t0 = time.perf_counter()
    out = llm.create_completion(  # type: ignore[attr-defined]
        PROMPT, max_tokens=NUM_PREDICT, seed=SEED, temperature=SAMPLING["temperature"], top_k=SAMPLING["top_k"],
        top_p=SAMPLING["top_p"], min_p=SAMPLING["min_p"], repeat_penalty=SAMPLING["repeat_penalty"],
    )
    return int(out["usage"]["completion_tokens"]) / (time.perf_counter() - t0)


async def _throughput(server: EmbeddedModelServer, url: str) -> tuple[list[float], list[float], list[float]]:
    from llama_cpp import Llama

    await server.load(MODEL)
    path = server.service.registry.resolve_path(server.service.find(MODEL))
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=server.service.runner.n_threads,
                n_threads_batch=server.service.runner.n_threads, verbose=False)
    ours: list[float] = []
    streamed: list[float] = []
    direct: list[float] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
            await _server_run(http, url)  # warm-up: first-use costs are not throughput
            _direct_run(llm)
            for i in range(RUNS):  # interleaved, in alternating order, so drift hits both sides alike
                if i % 2:
                    direct.append(_direct_run(llm))
                ours.append(await _server_run(http, url))
                streamed.append(await _server_run(http, url, stream=True))
                if not i % 2:
                    direct.append(_direct_run(llm))
    finally:
        llm.close()
    return ours, streamed, direct


async def _timed(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.get(url) as r:
            await r.read()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _latency(url: str) -> tuple[list[float], list[float]]:
    run_dir = Path(tempfile.mkdtemp(prefix="cyn-bench-"))
    proxy = InferenceProxy(url, 4, label="bench")
    await proxy.start(run_dir / "inference-proxy.sock")
    try:
        async with aiohttp.ClientSession() as tcp, aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(proxy.socket_path))
        ) as uds:
            direct_url, proxied_url = url + "/api/version", "http://job/api/version"
            await _timed(tcp, direct_url, 50)
            await _timed(uds, proxied_url, 50)
            direct: list[float] = []
            proxied: list[float] = []
            for _ in range(5):  # alternate blocks
                direct += await _timed(tcp, direct_url, LATENCY_REQUESTS // 5)
                proxied += await _timed(uds, proxied_url, LATENCY_REQUESTS // 5)
        return direct, proxied
    finally:
        await proxy.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


async def _main() -> None:
    server = EmbeddedModelServer(WorkerInference(n_ctx=N_CTX))
    url = await server.start("127.0.0.1:0")
    try:
        ours, streamed, direct = await _throughput(server, url)
        d, p = await _latency(url)
    finally:
        await server.stop()
    row(f"built-in /api/generate tokens/s (median of {RUNS}, {NUM_PREDICT} tok)", median(ours), "tok/s",
        baseline=median(direct), goal="ratio >= 0.95", ratio_note="vs llama-cpp-python direct")
    row("  the same, streamed (NDJSON, token by token)", median(streamed), "tok/s", baseline=median(direct))
    row("  context: median of the per-round ratios (each pair run back to back)",
        median([o / d for o, d in zip(ours, direct, strict=True)]), "x")
    row(f"proxy p50 GET /api/version (N={len(p)}), direct TCP baseline", median(p), "ms", baseline=median(d))
    row("proxy p99 GET /api/version, direct TCP baseline", pct(p, 99), "ms", baseline=pct(d, 99))
    row("proxy added latency p50", median(p) - median(d), "ms", goal="<= 3 ms")
    row("proxy added latency p99", pct(p, 99) - pct(d, 99), "ms", goal="<= 15 ms")


def run() -> None:
    asyncio.run(_main())

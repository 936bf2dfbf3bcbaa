"""The per-job inference proxy on a real Unix socket: in front of a tiny aiohttp upstream on loopback for the
edge cases, and in front of the real built-in server for the model path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cynode.inference.client import OllamaClient
from cynode.worker.inference_proxy import ALLOWED_ROUTES, ConcurrencyLimiter, InferenceProxy, allowed_methods
from tests.test_inference_helpers import MODEL

MiB = 1024 * 1024


class Upstream:
    """A loopback stand-in for Ollama that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], int]] = []
        self.release = asyncio.Event()  # lets a streaming test decide when the second chunk is sent
        self.active = 0
        self.max_active = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), len(body)))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if request.path == "/api/chat" and request.query.get("hold"):  # one chunk, then waits for the test
                resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                await resp.prepare(request)
                await resp.write(b'{"n":1}\n')
                await asyncio.wait_for(self.release.wait(), 10)
                await resp.write(b'{"n":2}\n')
                await resp.write_eof()
                return resp
            if request.path == "/api/generate" and request.query.get("sleep"):
                await asyncio.sleep(float(request.query["sleep"]))
            if request.path == "/v1/completions" and request.query.get("slow"):  # a slow stream
                resp = web.StreamResponse()
                await resp.prepare(request)
                with contextlib.suppress(ConnectionResetError):  # the proxy hangs up at its deadline
                    for _ in range(50):
                        await resp.write(b"tick\n")
                        await asyncio.sleep(0.1)
                return resp
            return web.json_response({"path": request.path_qs, "bytes": len(body)},
                                     headers={"Set-Cookie": "s=1", "X-Upstream": "yes"})
        finally:
            self.active -= 1


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    await u.start()
    yield u
    await u.stop()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its 0700 parents would stop the sandbox uid before it reaches our socket.
    d = Path(tempfile.mkdtemp(prefix="cyn-proxy-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def proxy(upstream: Upstream, sock_dir: Path) -> AsyncIterator[InferenceProxy]:
    p = InferenceProxy(upstream.url, 4, timeout_s=1.0, label="job:test")
    await p.start(sock_dir / "jobs" / "j1" / "inference-proxy.sock")
    yield p
    await p.stop()


def session_for(p: InferenceProxy) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(p.socket_path)))


# ------------------------------------------------------------------------------------------------ routing


async def test_allowed_paths_are_forwarded_with_their_query(proxy: InferenceProxy, upstream: Upstream) -> None:
    async with session_for(proxy) as http:
        for path, methods in ALLOWED_ROUTES.items():
            method = "POST" if "POST" in methods else "GET"
            async with http.request(method, f"http://job{path}?a=1", json={"x": 1} if method == "POST" else None) as r:
                assert r.status == 200, path
                assert (await r.json())["path"] == f"{path}?a=1"
        for model in ("gemma3:270m", "gemma3%3A270m"):
            async with http.get(f"http://job/v1/models/{model}") as r:
                assert r.status == 200
    assert len(upstream.seen) == len(ALLOWED_ROUTES) + 2


@pytest.mark.parametrize("path", [
    "/api/pull", "/api/push", "/api/delete", "/api/create", "/api/copy", "/api/blobs/sha256:abc", "/",
    "/api/tags/extra", "//api/pull", "/API/PULL", "/api/%70ull", "/api/generate/../pull", "/v1/models/../x",
    "/v1/files", "/metrics", "/v1/models/%2E%2E%2Fapi%2Fpull", "/v1/models/a%2Fb",
])
async def test_model_management_and_unknown_paths_are_refused(proxy: InferenceProxy, upstream: Upstream,
                                                              path: str) -> None:
    async with session_for(proxy) as http, http.post(f"http://job{path}", json={"model": "x"}) as r:
        assert r.status == 403
        assert r.headers["Content-Type"] == "application/problem+json"
        problem = await r.json()
        assert problem["type"] == "urn:cynodeai:error:authorization" and problem["status"] == 403
    assert upstream.seen == []


async def test_wrong_method_is_405(proxy: InferenceProxy, upstream: Upstream) -> None:
    async with session_for(proxy) as http, http.get("http://job/api/generate") as r:
        assert r.status == 405
    assert upstream.seen == []


@given(st.text(alphabet="/apiv1ulgenrtchs.%:", max_size=30))
def test_only_the_listed_inference_routes_pass(path: str) -> None:
    allowed = allowed_methods(path)
    if allowed is not None:
        assert path in ALLOWED_ROUTES or (path.startswith("/v1/models/") and ".." not in path
                                          and "/" not in path.removeprefix("/v1/models/"))


async def test_healthz_is_answered_locally_even_with_the_backend_down(sock_dir: Path) -> None:
    p = InferenceProxy("http://127.0.0.1:9", 1)
    await p.start(sock_dir / "h.sock")
    try:
        async with session_for(p) as http, http.get("http://job/healthz") as r:
            assert (r.status, await r.text()) == (200, "ok")
    finally:
        await p.stop()


# ------------------------------------------------------------------------------------------------ limits


async def test_body_over_10_mib_is_413_and_exactly_10_mib_passes(proxy: InferenceProxy, upstream: Upstream) -> None:
    async with session_for(proxy) as http:
        async with http.post("http://job/api/generate", data=b"x" * (10 * MiB + 1)) as r:
            assert r.status == 413  # refused on Content-Length
        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(11):
                yield b"y" * MiB

        async with http.post("http://job/api/generate", data=chunked()) as r:
            assert r.status == 413  # no Content-Length: refused after reading 10 MiB + 1 byte
        async with http.post("http://job/api/generate", data=b"z" * (10 * MiB)) as r:
            assert r.status == 200 and (await r.json())["bytes"] == 10 * MiB
    assert [s[3] for s in upstream.seen] == [10 * MiB]


async def test_upstream_down_is_502(sock_dir: Path) -> None:
    p = InferenceProxy("http://127.0.0.1:9", 1)  # nothing listens on the discard port
    await p.start(sock_dir / "down.sock")
    try:
        async with session_for(p) as http, http.post("http://job/api/chat", json={}) as r:
            assert r.status == 502
            assert (await r.json())["type"] == "urn:cynodeai:error:upstream_unavailable"
    finally:
        await p.stop()


async def test_slow_upstream_is_504(proxy: InferenceProxy) -> None:
    async with session_for(proxy) as http, http.post("http://job/api/generate?sleep=2", json={}) as r:
        assert r.status == 504  # proxy timeout is 1 s here (120 s by default)
        assert (await r.json())["type"] == "urn:cynodeai:error:upstream_timeout"


async def test_a_stream_still_running_at_the_deadline_is_cut(proxy: InferenceProxy,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cynode.worker.inference_proxy")
    async with session_for(proxy) as http, http.post("http://job/v1/completions?slow=1", json={}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # 5 s of ticks against a 1 s budget: the whole exchange counts
    (rec,) = [r for r in caplog.records if r.getMessage() == "inference proxy request"]
    assert rec.status == 504  # type: ignore[attr-defined]


async def test_concurrency_is_capped_per_node_across_proxies(upstream: Upstream, sock_dir: Path) -> None:
    limiter = ConcurrencyLimiter(1)
    proxies = [InferenceProxy(upstream.url, limiter) for _ in range(2)]
    for i, p in enumerate(proxies):
        await p.start(sock_dir / f"c{i}.sock")
    try:
        async def call(p: InferenceProxy) -> int:
            async with session_for(p) as http, http.post("http://job/api/generate?sleep=0.2", json={}) as r:
                return r.status

        assert await asyncio.gather(*(call(p) for p in proxies * 2)) == [200] * 4
        assert upstream.max_active == 1
    finally:
        for p in proxies:
            await p.stop()


async def test_limiter_serves_waiters_first_come_first_served() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[int] = []
    await limiter.acquire()

    async def waiter(i: int) -> None:
        async with limiter.slot():
            order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()  # a waiter that gives up does not lose anyone else's turn
    limiter.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 3, 4]
    assert limiter.active == 0 and limiter.waiting == 0


# ------------------------------------------------------------------------------------------------ pass-through


async def test_streams_pass_through_chunk_by_chunk(proxy: InferenceProxy, upstream: Upstream) -> None:
    async with session_for(proxy) as http, http.post("http://job/api/chat?hold=1", json={}) as r:
        first = await asyncio.wait_for(r.content.readline(), 5)
        assert json.loads(first) == {"n": 1}  # arrived while the upstream still holds the second chunk
        upstream.release.set()
        assert json.loads(await r.content.readline()) == {"n": 2}


async def test_credentials_do_not_cross(proxy: InferenceProxy, upstream: Upstream) -> None:
    headers = {"Authorization": "Bearer secret", "Cookie": "a=b", "Proxy-Authorization": "Basic x",
               "Proxy-Anything": "1", "X-Request-Id": "r1", "Content-Type": "application/json"}
    async with session_for(proxy) as http, http.post("http://job/api/show", data=b"{}", headers=headers) as r:
        assert r.status == 200
        assert "Set-Cookie" not in r.headers and r.headers["X-Upstream"] == "yes"
    sent = {k.lower(): v for k, v in upstream.seen[0][2].items()}
    assert not {"authorization", "cookie", "proxy-authorization", "proxy-anything"} & set(sent)
    assert sent["x-request-id"] == "r1" and sent["content-type"] == "application/json"


async def test_each_exchange_is_logged_without_its_body(proxy: InferenceProxy,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cynode.worker.inference_proxy")
    async with session_for(proxy) as http, http.post("http://job/api/generate", json={"prompt": "TOPSECRET"}) as r:
        await r.read()
    (rec,) = [r for r in caplog.records if r.getMessage() == "inference proxy request"]
    assert (rec.path, rec.status, rec.label) == ("/api/generate", 200, "job:test")  # type: ignore[attr-defined]
    assert rec.bytes_in > 0 and rec.bytes_out > 0 and rec.duration_ms >= 0  # type: ignore[attr-defined]
    assert "TOPSECRET" not in caplog.text


# ------------------------------------------------------------------------------------------------ the socket


async def test_socket_is_private_to_the_sandbox_user(proxy: InferenceProxy) -> None:
    assert proxy.socket_path is not None
    st_sock = proxy.socket_path.stat()
    assert stat.S_IMODE(st_sock.st_mode) == 0o600
    assert stat.S_IMODE(proxy.socket_path.parent.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("ownership hand-over to uid 65534 needs root")
    assert (st_sock.st_uid, st_sock.st_gid) == (65534, 65534)

    def curl_as(uid: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "curl", "-sS", "--max-time", "5",
             "--unix-socket", str(proxy.socket_path), "http://job/healthz"],
            capture_output=True, text=True,
        )

    if shutil.which("setpriv") is None or shutil.which("curl") is None:
        pytest.skip("setpriv and curl are needed to connect as another user")
    ok = await asyncio.to_thread(curl_as, 65534)
    assert (ok.returncode, ok.stdout) == (0, "ok")
    other = await asyncio.to_thread(curl_as, 65533)
    assert other.returncode != 0  # any other unprivileged user is kept out


async def test_stop_removes_the_socket(upstream: Upstream, sock_dir: Path) -> None:
    p = InferenceProxy(upstream.url, 1)
    path = sock_dir / "gone.sock"
    path.write_text("stale")  # a leftover from a crash does not stop a new proxy
    await p.start(path)
    assert path.is_socket()
    await p.stop()
    assert not path.exists()


async def test_socket_path_longer_than_107_bytes_is_refused(upstream: Upstream, sock_dir: Path) -> None:
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        await InferenceProxy(upstream.url, 1).start(sock_dir / ("x" * 120))


# ------------------------------------------------------------------------------------------------ real model


@pytest.mark.model
async def test_real_model_through_the_proxy(model_server: str, sock_dir: Path) -> None:
    p = InferenceProxy(model_server, 2, label="job:model")
    await p.start(sock_dir / "m.sock")
    try:
        url = "http+unix://" + str(p.socket_path).replace("/", "%2F")
        async with OllamaClient(url) as client:
            assert MODEL in [m.name for m in (await client.tags()).models]
            chunks = [c async for c in await client.generate(MODEL, "Hello", {"num_predict": 6}, stream=True)]
            assert len(chunks) >= 3 and chunks[-1].done and chunks[-1].eval_count == 6
        curl = await asyncio.to_thread(subprocess.run, [
            "curl", "-sS", "--unix-socket", str(p.socket_path), "http://job/api/generate",
            "-d", json.dumps({"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}}),
        ], capture_output=True, text=True)
        assert json.loads(curl.stdout)["eval_count"] == 3
    finally:
        await p.stop()

"""The per-job inference proxy (worker.md §7.3, §7.5; DECISIONS.md 3).

A job with `use_inference` gets a Unix socket (never a TCP port) in its run dir, mounted into the sandbox at
/run/cynode/inference-proxy.sock. The proxy forwards only the inference part of the Ollama/OpenAI API to the node's
backend (the built-in server or an existing Ollama): model management (pull, push, create, copy, delete, blobs) is
refused with 403, so a job can use models but never change what the node has.

Limits: request body <= 10 MiB (413), whole exchange including a streamed answer <= 120 s (504), upstream down
(502). Streams pass through chunk by chunk. Credentials never cross: inbound Authorization/Cookie/Proxy-* and
outbound Set-Cookie are dropped and none are added. One ConcurrencyLimiter per node caps upstream calls; waiting
requests are served first come, first served, inside their own 120 s.

    limiter = ConcurrencyLimiter(settings.worker.inference.max_concurrency)    # one per node
    proxy = InferenceProxy(backend_url, limiter, label=f"job:{job_id}")
    await proxy.start(run_dir / "inference-proxy.sock")
    ...
    await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web
from multidict import CIMultiDict

from cynode.inference.client import parse_base_url

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 10.0
SANDBOX_OWNER = (65534, 65534)  # the sandbox's user when the worker runs as root (worker.md §6)
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL

_READ = frozenset({"GET", "HEAD"})
_WRITE = frozenset({"POST"})
ALLOWED_ROUTES: Mapping[str, frozenset[str]] = {
    "/api/generate": _WRITE, "/api/chat": _WRITE, "/api/embed": _WRITE, "/api/embeddings": _WRITE,
    "/api/show": _WRITE, "/api/tags": _READ, "/api/ps": _READ, "/api/version": _READ,
    "/v1/chat/completions": _WRITE, "/v1/completions": _WRITE, "/v1/embeddings": _WRITE, "/v1/models": _READ,
}
_MODEL_PATH = re.compile(r"/v1/models/(?:[A-Za-z0-9._:-]|%3[Aa])+")  # no other escapes: no smuggled "/" or ".."
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host",
    "content-length", "expect",
})
_NEVER_IN = frozenset({"authorization", "cookie"})  # plus every proxy-* header
_NEVER_OUT = frozenset({"set-cookie"})

PROBLEM_JSON = "application/problem+json"


def allowed_methods(path: str) -> frozenset[str] | None:
    """Methods the proxy forwards for a raw request path; None = not an inference endpoint (403)."""
    if path in ALLOWED_ROUTES:
        return ALLOWED_ROUTES[path]
    if _MODEL_PATH.fullmatch(path) and ".." not in path:
        return _READ  # GET /v1/models/<id>: read-only, what the OpenAI client's models.retrieve() asks
    return None


def inbound_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in _HOP_BY_HOP or low in _NEVER_IN or low.startswith("proxy-"):
            continue
        out.add(name, value)
    return out


def outbound_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in _HOP_BY_HOP or low in _NEVER_OUT:
            continue
        out.add(name, value)
    return out


class _Problem(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    instance: str


_TITLES = {403: "Forbidden", 405: "Method Not Allowed", 413: "Payload Too Large", 502: "Bad Gateway",
           504: "Gateway Timeout"}
_CODES = {403: "authorization", 405: "method_not_allowed", 413: "payload_too_large", 502: "upstream_unavailable",
          504: "upstream_timeout"}


def problem(status: int, detail: str, request_id: str) -> web.Response:
    body = _Problem(type=f"urn:cynodeai:error:{_CODES[status]}", title=_TITLES[status], status=status, detail=detail,
                    instance=request_id)
    return web.Response(body=msgspec.json.encode(body), status=status, content_type=PROBLEM_JSON)


class ConcurrencyLimiter:
    """A counting limit whose waiters are served strictly in arrival order (a freed slot is handed over, so a
    newcomer can never overtake a waiter). Share one per node between all proxies."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # on success the slot was handed over: `active` already counts it
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


@dataclass
class _Exchange:
    """What one request did, for the log line and for choosing between a 504 and cutting a started stream."""

    request_id: str
    method: str
    path: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    response: web.StreamResponse | None = None


class InferenceProxy:
    def __init__(
        self,
        upstream_url: str,
        max_concurrency: int | ConcurrencyLimiter = 4,
        *,
        timeout_s: float = TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
        label: str = "",
        owner: tuple[int, int] | None = None,
    ) -> None:
        """`max_concurrency`: a node-wide ConcurrencyLimiter to share, or a number for a private one.
        `owner`: uid/gid the socket is given (default: the sandbox user 65534 when running as root)."""
        self.upstream = parse_base_url(upstream_url)
        self.limiter = (
            max_concurrency if isinstance(max_concurrency, ConcurrencyLimiter) else ConcurrencyLimiter(max_concurrency)
        )
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.label = label
        self.owner = owner if owner is not None else (SANDBOX_OWNER if os.geteuid() == 0 else None)
        self.socket_path: Path | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, socket_path: str | os.PathLike[str]) -> None:
        path = Path(socket_path)
        created_dir = _prepare_socket_path(path)
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self.upstream.socket_path) if self.upstream.socket_path
            else aiohttp.TCPConnector(limit=0)  # the limiter, not the pool, caps concurrency
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,  # bytes pass through as the upstream sent them
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(path)).start()
        self.socket_path = path
        _restrict_socket(path, self.owner, own_dir=created_dir)
        log.info("inference proxy listening", extra={"socket": str(path), "label": self.label})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.socket_path is not None:
            _remove(self.socket_path)

    # ------------------------------------------------------------------ request path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        raw = request.raw_path
        path, query = raw.split("?", 1) if "?" in raw else (raw, "")
        ex = _Exchange(request_id=secrets.token_hex(8), method=request.method, path=path)
        try:
            resp = await self._exchange(request, path, query, ex)
            ex.status = ex.status or resp.status  # already set when a started stream was cut (504/502)
            return resp
        finally:
            log.info("inference proxy request", extra={
                "label": self.label, "request_id": ex.request_id, "method": ex.method, "path": ex.path,
                "status": ex.status or 499, "bytes_in": ex.bytes_in, "bytes_out": ex.bytes_out,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
            })

    async def _exchange(self, request: web.Request, path: str, query: str, ex: _Exchange) -> web.StreamResponse:
        if path == "/healthz" and request.method in _READ:
            return web.Response(text="ok")
        methods = allowed_methods(path)
        if methods is None:
            return problem(403, f"{path} is not an inference endpoint; the inference proxy does not forward it",
                           ex.request_id)
        if request.method not in methods:
            return problem(405, f"{request.method} is not allowed on {path}", ex.request_id)
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            return problem(413, f"request body exceeds {self.max_body_bytes} bytes", ex.request_id)
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await _read_capped(request, self.max_body_bytes)
                if body is None:
                    return problem(413, f"request body exceeds {self.max_body_bytes} bytes", ex.request_id)
                ex.bytes_in = len(body)
                async with self.limiter.slot():
                    return await self._forward(request, path + (f"?{query}" if query else ""), body, ex)
        except TimeoutError:
            if ex.response is not None and ex.response.prepared:
                ex.status = 504
                if request.transport is not None:
                    request.transport.close()  # mid-stream: the status is out; cutting the stream says it failed
                return ex.response
            return problem(504, f"inference did not finish within {self.timeout_s:g} s", ex.request_id)

    async def _forward(self, request: web.Request, target: str, body: bytes, ex: _Exchange) -> web.StreamResponse:
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method, self.upstream.base + target, data=body if body else None,
                headers=inbound_headers(request.headers), allow_redirects=False,
            )
        except aiohttp.ClientError as e:
            log.warning("inference upstream unreachable", extra={"label": self.label, "error": str(e)})
            return problem(502, "the inference backend is unreachable", ex.request_id)
        try:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=outbound_headers(upstream.headers))
            if upstream.content_length is not None and request.method != "HEAD":
                resp.content_length = upstream.content_length
            ex.response = resp
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            try:
                async for chunk in upstream.content.iter_any():  # as it arrives: streams stay streams
                    await resp.write(chunk)
                    ex.bytes_out += len(chunk)
            except aiohttp.ClientError as e:  # the backend broke off mid-answer: pass the break on
                log.warning("inference upstream failed mid-answer", extra={"label": self.label, "error": str(e)})
                ex.status = 502
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write_eof()
            return resp
        finally:
            upstream.release()


def _prepare_socket_path(path: Path) -> bool:
    """Check the length, create the directory (0700) if missing, clear a stale socket; True if the dir is new."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    created = not path.parent.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove(path)  # left over from a crashed run
    return created


def _restrict_socket(path: Path, owner: tuple[int, int] | None, *, own_dir: bool) -> None:
    """0600, owned by the sandbox's user: only that user (and root) can connect; permissions are never widened."""
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, *owner)
        if own_dir:
            os.chown(path.parent, *owner)  # a 0700 directory the sandbox user could not enter would hide the socket


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` (never reads more than limit + 1 bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None

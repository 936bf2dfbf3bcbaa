"""Run several ASGI listeners in one event loop (uvicorn), with signals handled by the caller, not by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from cynode.config import parse_listen_addr


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:  # serve.py owns SIGINT/SIGTERM
        yield


def bind(listen_addr: str) -> socket.socket:
    """Bind early so a port clash is reported at startup and port 0 resolves to a real port before we advertise it."""
    host, port = parse_listen_addr(listen_addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {listen_addr}: {e.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Listener:
    def __init__(self, name: str, app: Any, sock: socket.socket, *, keepalive_s: int = 120) -> None:
        self.name = name
        self.sock = sock
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, timeout_keep_alive=keepalive_s,
            timeout_graceful_shutdown=30, server_header=False, http="httptools", loop="none",
            # X-Forwarded-For is honoured only from [gateway] trusted_proxies (gateway/guard.py ClientIp); uvicorn's
            # own handling would trust any loopback peer and let it pick its client address.
            proxy_headers=False,
        )
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name=f"listener-{self.name}")

    async def started(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.server.started:
                if self.task and self.task.done():
                    self.task.result()
                    raise RuntimeError(f"listener {self.name} stopped during startup")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task

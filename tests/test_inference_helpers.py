"""Helpers for the inference tests (no tests here): the built-in server on its own event-loop thread, so the
blocking `ollama` and `openai` clients can call it from plain test functions and async tests from their own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from cynode.config import WorkerInference
from cynode.inference.server import EmbeddedModelServer

T = TypeVar("T")
MODEL = "gemma3:270m"


class ServerThread:
    def __init__(self, settings: WorkerInference | None = None, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="model-server-loop", daemon=True)
        self._thread.start()
        self.server = EmbeddedModelServer(settings or WorkerInference(n_ctx=1024), **kwargs)
        self.url = self.call(lambda: self.server.start("127.0.0.1:0"))

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        async def run() -> T:
            return await fn()

        fut: Future[T] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return fut.result(timeout)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """The same from a coroutine on another loop (an async test)."""
        async def run() -> T:
            return await fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def stop(self) -> None:
        self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

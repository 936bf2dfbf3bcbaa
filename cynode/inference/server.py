"""The built-in Ollama-compatible model server: an aiohttp app the worker runs in-process on loopback.

    server = EmbeddedModelServer(settings.worker.inference)
    base_url = await server.start()          # "127.0.0.1:0" (from settings) -> "http://127.0.0.1:41234"
    await server.load("gemma3:270m")          # optional warm-up; otherwise the first request loads it
    statuses = await server.models()          # for the capability report
    await server.stop()

Errors are mapped here, in one place: Ollama's `{"error": "..."}` on /api/*, OpenAI's error object on /v1/*.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from aiohttp import web

from cynode.config import WorkerInference, parse_listen_addr
from cynode.contracts.inference import ErrorResponse, ModelStatus
from cynode.inference.generation import InvalidRequest
from cynode.inference.ollama_api import OllamaApi
from cynode.inference.openai_api import OpenAIApi, openai_error
from cynode.inference.runner import ModelLoadError
from cynode.inference.service import (
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MAX_QUEUE,
    ModelService,
    ServerBusy,
    UnknownModel,
    Unsupported,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Exceptions a handler may raise on purpose -> HTTP status. Anything else is a 500 with a generic message.
_STATUS: list[tuple[type[BaseException], int]] = [
    (msgspec.ValidationError, 400),
    (msgspec.DecodeError, 400),
    (InvalidRequest, 400),
    (UnknownModel, 404),
    (ModelLoadError, 500),
    (Unsupported, 501),
    (ServerBusy, 503),
]


def error_response(path: str, status: int, message: str) -> web.Response:
    body: msgspec.Struct = openai_error(message, status) if path.startswith("/v1/") else ErrorResponse(message)
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        if e.status < 400:
            raise
        return error_response(request.path, e.status, e.reason or "error")
    except Exception as e:
        status = next((code for kind, code in _STATUS if isinstance(e, kind)), 500)
        if status == 500 and not isinstance(e, ModelLoadError):
            log.error("model server error", exc_info=e, extra={"path": request.path})
            return error_response(request.path, 500, "internal error")
        return error_response(request.path, status, str(e))
    finally:
        log.debug("model server request", extra={
            "method": request.method, "path": request.path, "status": status,
            "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
        })


def build_app(service: ModelService) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app.add_routes(OllamaApi(service).routes())
    app.add_routes(OpenAIApi(service).routes())
    app.router.add_get("/healthz", _healthz)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class EmbeddedModelServer:
    def __init__(
        self,
        settings: WorkerInference,
        *,
        packaged_model: bool = True,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.settings = settings
        self.service = ModelService(settings, packaged=packaged_model, keep_alive_s=keep_alive_s, max_queue=max_queue)
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, listen_addr: str | None = None) -> str:
        """Listen (port 0 = any free port) and return the base URL clients use, e.g. http://127.0.0.1:41234."""
        host, port = parse_listen_addr(listen_addr or self.settings.embedded_listen_addr)
        runner = web.AppRunner(build_app(self.service), access_log=None, handler_cancellation=True,
                               shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            await runner.cleanup()
            raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        log.info("built-in model server listening", extra={"url": self.base_url})
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.service.close()

    def register(self, name: str, path: str | Path) -> None:
        """Offer another GGUF file under `name` (besides the packaged model and models_dir)."""
        self.service.register(name, path)

    async def load(self, name: str) -> None:
        """Load a model now instead of on its first request; raises ModelLoadError (also recorded as failed)."""
        await self.service.load(name)

    async def unload(self) -> None:
        await self.service.unload()

    async def models(self) -> list[ModelStatus]:
        return await self.service.models()

    @property
    def loaded_model(self) -> str | None:
        loaded = self.service.runner.loaded
        return loaded.name if loaded else None


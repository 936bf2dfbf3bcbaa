"""Node-local inference (worker.md §7): the backend the config asks for, its model status for capability reports,
and the per-job proxy (plus loopback shim) that is the only way a sandbox reaches it.

At most one backend: an existing Ollama at `inference.existing_url` always wins (nothing started, never stopped);
otherwise the built-in model server runs in-process on loopback, started only once a config enables it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import aiohttp

from cynode.config import Settings
from cynode.contracts.node import AckError, InferenceBackendConfig, ModelState
from cynode.contracts.sandbox import ShimSpec
from cynode.worker.capability import InferenceFacts
from cynode.worker.jobs import JobInferenceHandle

log = logging.getLogger("cynode.worker.inference")

SOCKET_NAME = "inference-proxy.sock"
PROXY_URL_IN_SANDBOX = "http+unix://%2Frun%2Fcynode%2Finference-proxy.sock"
MAX_SOCKET_PATH = 107


class NodeInference:
    def __init__(self, settings: Settings, *, on_change: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.cfg = settings.worker.inference
        self.on_change = on_change  # the node manager sends a report at once
        self.base_url: str | None = None
        self.existing_service = False
        self._server: Any = None  # cynode.inference.server.EmbeddedModelServer, imported lazily (llama.cpp)
        self._models: list[ModelState] = []
        self._limiter: Any = None
        self._load_task: asyncio.Task[None] | None = None
        self._selected: str | None = None
        self.run_root = settings.worker_state_path / "run" / "jobs"

    @property
    def supported(self) -> bool:
        return self.cfg.mode != "disabled" and self.settings.worker.sandbox.mode != "sandbox_only"

    # -- backend ----------------------------------------------------------------------------------------------------

    async def _existing_answers(self) -> bool:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s, \
                    s.get(self.cfg.existing_url.rstrip("/") + "/api/tags") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def apply(self, backend: InferenceBackendConfig | None) -> AckError | None:
        """Make the backend match the config (idempotent). Errors here are local constraints, not crashes."""
        if backend is not None and backend.enabled and not self.supported:
            return AckError(type="local_constraint", message="inference is disabled on this node",
                            details={"field": "inference.mode"})
        if not self.supported:
            return None
        use_existing = self.cfg.backend == "existing" or (self.cfg.backend == "auto" and await self._existing_answers())
        if use_existing:
            if not self.existing_service:
                log.info("using the existing inference service", extra={"url": self.cfg.existing_url})
            self.existing_service, self.base_url = True, self.cfg.existing_url.rstrip("/")
        elif backend is not None and backend.enabled and self._server is None:
            await self._start_embedded()
        selected = backend.selected_model if backend is not None else None
        if selected and selected != self._selected and self._server is not None:
            self._selected = selected
            self._load_task = asyncio.create_task(self._load(selected), name="model-load")
        await self.refresh()
        return None

    async def _start_embedded(self) -> None:
        from cynode.inference.server import EmbeddedModelServer

        # The selected model stays loaded (keep_alive forever); the PM answers without cold starts.
        self._server = EmbeddedModelServer(self.cfg, keep_alive_s=float("inf"))
        self.base_url = await self._server.start()
        self.existing_service = False
        log.info("built-in model server started", extra={"url": self.base_url})

    async def _load(self, name: str) -> None:
        try:
            await self._server.load(name)
            log.info("model loaded", extra={"model": name})
        except Exception as e:  # recorded as failed in the model list; the orchestrator picks another
            log.error("model %s failed to load: %s", name, e)
        await self.refresh()
        self.on_change()

    async def refresh(self) -> None:
        """Re-read the model list (capability reports are built from this cache)."""
        if self._server is not None:
            states = []
            for m in await self._server.models():
                status = m.status
                if m.name == self._selected and self._load_task is not None and not self._load_task.done():
                    status = "loading"
                states.append(ModelState(name=m.name, status=status, size_bytes=m.size_bytes, detail=m.detail))
            self._models = states
        elif self.existing_service and self.base_url:
            from cynode.inference.client import OllamaClient
            from cynode.inference.errors import InferenceError

            try:
                async with OllamaClient(self.base_url, timeout=5) as c:
                    tags = await c.tags()
                self._models = [ModelState(name=m.name, status="available", size_bytes=m.size) for m in tags.models]
            except InferenceError:
                self._models = []

    def facts(self) -> InferenceFacts:
        return InferenceFacts(supported=self.supported, existing_service=self.existing_service,
                              running=self.base_url is not None, models=list(self._models))

    async def stop(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._load_task
        if self._server is not None:  # only what this node started; an existing service is never stopped
            await self._server.stop()
            self._server = None
        self.base_url = None

    # -- per job ------------------------------------------------------------------------------------------------------

    async def job_handle(self, job_id: str) -> JobInferenceHandle | None:
        """A proxy socket for one job (and the shim spec when enabled), or None when there is no backend."""
        if self.base_url is None:
            return None
        from cynode.worker.inference_proxy import ConcurrencyLimiter, InferenceProxy

        if self._limiter is None:
            self._limiter = ConcurrencyLimiter(self.cfg.max_concurrency)
        run_dir = self.run_root / job_id
        sock = run_dir / SOCKET_NAME
        if len(str(sock)) > MAX_SOCKET_PATH:
            log.error("inference socket path too long (%d bytes): %s", len(str(sock)), sock)
            return None
        run_dir.mkdir(parents=True, exist_ok=True)
        uid, _, gid = self.settings.worker.sandbox.user.partition(":")
        owner = (int(uid), int(gid or uid))
        with contextlib.suppress(PermissionError):
            os.chown(run_dir, *owner)  # the sandbox user must enter the dir (0700, owned by it)
            run_dir.chmod(0o700)
        proxy = InferenceProxy(self.base_url, self._limiter, label=f"job:{job_id}", owner=owner)
        await proxy.start(sock)
        env = {"INFERENCE_PROXY_URL": PROXY_URL_IN_SANDBOX}
        shim = None
        if self.settings.worker.sandbox.inference_loopback_shim:
            env["OLLAMA_BASE_URL"] = "http://localhost:11434"
            shim = ShimSpec(image=self.settings.worker.sandbox.default_image, command=["cynode-inference-shim"])

        async def release() -> None:
            await proxy.stop()
            shutil.rmtree(run_dir, ignore_errors=True)

        return JobInferenceHandle(run_dir=str(run_dir), env=env, shim=shim, release=release)


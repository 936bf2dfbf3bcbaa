"""The built-in model server's service layer: names -> files, load/unload with Ollama's keep_alive, generation,
and the model status the worker reports. HTTP handlers (ollama_api, openai_api) only decode, call and encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

from cynode.config import WorkerInference
from cynode.contracts.inference import (
    ModelState,
    ModelStatus,
    ModelSummary,
    PsResponse,
    RunningModel,
    ShowResponse,
    TagsResponse,
)
from cynode.inference.durations import FOREVER, parse_keep_alive
from cynode.inference.generation import Event, InvalidRequest, Job, Started
from cynode.inference.gguf import GGUFError
from cynode.inference.prompt import GEMMA_TEMPLATE
from cynode.inference.registry import ModelFile, ModelInfo, ModelRegistry
from cynode.inference.runner import LlamaRunner, LoadRequest, ModelLoadError, clamp_ctx

DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's default: a model stays loaded 5 minutes after its last request
DEFAULT_MAX_QUEUE = 64
_FAR_FUTURE = "2318-01-01T00:00:00Z"  # `expires_at` of a model kept forever (Ollama also shows a far date)


class UnknownModel(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class ServerBusy(Exception):
    def __init__(self) -> None:
        super().__init__("server busy, please try again. maximum pending requests exceeded")


class Unsupported(Exception):
    """An Ollama feature the built-in server does not offer (pull, push, create, copy, delete, embeddings)."""


def keep_alive_seconds(value: float | str | None, default: float) -> float:
    try:
        return parse_keep_alive(value, default)
    except ValueError as e:
        raise InvalidRequest(f"keep_alive: {e}") from None


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ModelService:
    def __init__(
        self,
        settings: WorkerInference,
        *,
        packaged: bool = True,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.models_dir, packaged=packaged)
        self.runner = LlamaRunner(n_threads=settings.n_threads)
        self.keep_alive_s = keep_alive_s
        self.max_queue = max_queue
        self.failures: dict[ModelFile, str] = {}  # keyed by file version: a replaced file gets a fresh chance
        self._active = 0
        self._timer: asyncio.TimerHandle | None = None
        self._expires_at: float | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ registry

    def register(self, name: str, path: str | Path) -> None:
        self.registry.register(name, path)

    def find(self, name: str) -> ModelFile:
        entry = self.registry.find(name) if name else None
        if entry is None:
            raise UnknownModel(name)
        return entry

    async def info(self, entry: ModelFile) -> ModelInfo:
        try:
            return await asyncio.to_thread(self.registry.describe, entry)
        except (GGUFError, OSError) as e:
            self.failures[entry] = str(e)
            raise ModelLoadError(entry.name, str(e)) from None

    async def models(self) -> list[ModelStatus]:
        """For the capability report: every offered model, whether it can be loaded, and which one is loaded."""
        loaded = self.runner.loaded
        out = []
        for entry in self.registry.entries():
            state: ModelState
            if self.runner.loading == entry.name:
                state, detail = "loading", None
            else:
                detail = self.failures.get(entry)
                if detail is None and entry.path is not None and not await asyncio.to_thread(_looks_like_gguf, entry):
                    detail = "not a GGUF file"
                state = "failed" if detail else "available"
            info = self.registry.cached_info(entry)
            out.append(ModelStatus(
                name=entry.name, status=state, size_bytes=entry.size, digest=info.digest if info else None,
                detail=detail, loaded=loaded is not None and loaded.name == entry.name,
            ))
        return out

    async def tags(self) -> TagsResponse:
        out = []
        for entry in self.registry.entries():
            try:
                info: ModelInfo | None = await self.info(entry)
            except ModelLoadError:
                info = None  # a broken file is still listed (models() reports it failed), just without details
            out.append(ModelSummary(
                name=entry.name, model=entry.name, modified_at=rfc3339(entry.modified_at), size=entry.size,
                digest=info.digest if info else "", **({"details": info.details} if info else {}),
            ))
        return TagsResponse(models=out)

    async def show(self, name: str) -> ShowResponse:
        entry = self.find(name)
        info = await self.info(entry)
        n_ctx = clamp_ctx(self.settings.n_ctx, info.context_length)
        return ShowResponse(
            modelfile=f"# built-in model server\nFROM {entry.path or entry.name}\n",
            parameters=f"num_ctx {n_ctx}\nstop \"<end_of_turn>\"" if info.chat_template is None else f"num_ctx {n_ctx}",
            template=info.chat_template or GEMMA_TEMPLATE,
            license=info.license,
            details=info.details,
            model_info=dict(info.model_info),
            capabilities=["completion"],
            modified_at=rfc3339(entry.modified_at),
        )

    async def ps(self) -> PsResponse:
        loaded = self.runner.loaded
        entry = self.registry.find(loaded.name) if loaded else None
        if loaded is None or entry is None:
            return PsResponse(models=[])
        info = await self.info(entry)
        expires = rfc3339(self._expires_at) if self._expires_at is not None else _FAR_FUTURE
        return PsResponse(models=[RunningModel(
            name=entry.name, model=entry.name, size=entry.size, digest=info.digest, details=info.details,
            expires_at=expires, size_vram=0, context_length=loaded.n_ctx,
        )])

    # ------------------------------------------------------------------ load / unload

    async def load(self, name: str, *, num_ctx: int | None = None, keep_alive: float | str | None = None) -> int:
        """Load a model now (eagerly, e.g. the node's selected model); returns nanoseconds spent loading."""
        entry = self.find(name)
        keep_alive_seconds(keep_alive, self.keep_alive_s)
        self._begin()
        try:
            req = await self._load_request(entry, num_ctx)
            try:
                ns = await self.runner.load(req)
            except ModelLoadError as e:
                self.failures[entry] = e.detail
                raise
            self.failures.pop(entry, None)
            return ns
        finally:
            self._end(keep_alive)

    async def unload(self) -> None:
        self._cancel_timer()
        self._expires_at = None
        await self.runner.unload()

    async def close(self) -> None:
        self._cancel_timer()
        for task in list(self._background):
            await task
        await self.runner.close()

    # ------------------------------------------------------------------ generation

    async def generate(self, name: str, job: Job, keep_alive: float | str | None = None) -> AsyncGenerator[Event, None]:
        entry = self.find(name)
        keep_alive_seconds(keep_alive, self.keep_alive_s)  # refuse a bad value before doing any work
        if self._active >= self.max_queue:
            raise ServerBusy()
        self._begin()
        try:
            req = await self._load_request(entry, job.num_ctx)
            async with contextlib.aclosing(self.runner.generate(req, job)) as events:
                try:
                    async for event in events:
                        if isinstance(event, Started):
                            self.failures.pop(entry, None)
                        yield event
                except ModelLoadError as e:
                    self.failures[entry] = e.detail
                    raise
        finally:
            self._end(keep_alive)

    async def _load_request(self, entry: ModelFile, num_ctx: int | None) -> LoadRequest:
        info = await self.info(entry)
        if num_ctx is not None and num_ctx < 1:
            raise InvalidRequest(f"invalid num_ctx {num_ctx}")
        n_ctx = clamp_ctx(num_ctx or self.settings.n_ctx, info.context_length)
        return LoadRequest(
            name=entry.name, path=lambda: self.registry.resolve_path(entry), n_ctx=n_ctx,
            chat_template=info.chat_template,
        )

    # ------------------------------------------------------------------ keep_alive

    def _begin(self) -> None:
        self._active += 1
        self._cancel_timer()

    def _end(self, keep_alive: float | str | None) -> None:
        self._active -= 1
        seconds = keep_alive_seconds(keep_alive, self.keep_alive_s)  # checked before _begin()
        if seconds == FOREVER:
            self._expires_at = None
            return
        self._expires_at = time.time() + seconds
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._active or self.runner.loaded is None:
            return  # busy again: the next request's keep_alive decides
        task = asyncio.create_task(self.runner.unload(), name="model-keep-alive-expired")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._expires_at = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _looks_like_gguf(entry: ModelFile) -> bool:
    try:
        with open(entry.path or "", "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


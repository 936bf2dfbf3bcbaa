"""Ollama's native API (`/api/*`) on the built-in server. Handlers decode, call ModelService, encode.

Wire behaviour follows Ollama: /api/generate and /api/chat stream NDJSON unless `"stream": false`; the last line
(done=true) carries the counts and nanosecond durations; an empty prompt (or no messages) only loads the model, and
with `keep_alive: 0` unloads it. Errors are `{"error": "..."}` (mapped in server.py).
"""

from __future__ import annotations

import time
from typing import TypeVar

import msgspec
from aiohttp import web

from cynode.contracts.inference import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ModelOptions,
    ProgressResponse,
    PullRequest,
    ShowRequest,
    VersionResponse,
)
from cynode.inference.generation import (
    Finished,
    InvalidRequest,
    Job,
    grammar_from_format,
    max_tokens_from,
    sampling_from_options,
)
from cynode.inference.prompt import Turn
from cynode.inference.service import ModelService, Unsupported, keep_alive_seconds, rfc3339
from cynode.inference.streaming import NDJSON, Encoders, json_response, respond
from cynode.utf8 import decode_json

OLLAMA_COMPAT_VERSION = "0.11.0"  # the Ollama API level this server speaks (clients gate features on it)

T = TypeVar("T")


def decode(raw: bytes, type_: type[T]) -> T:
    return decode_json(raw or b"{}", type_)


def now() -> str:
    return rfc3339(time.time())


class OllamaApi:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/api/version", self.version),
            web.get("/api/tags", self.tags),
            web.post("/api/show", self.show),
            web.get("/api/ps", self.ps),
            web.post("/api/generate", self.generate),
            web.post("/api/chat", self.chat),
            web.post("/api/pull", self.pull),
            *[web.route(method, path, self.unsupported) for method, path in _UNSUPPORTED],
        ]

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")  # clients probe this exact text

    async def version(self, request: web.Request) -> web.Response:
        return json_response(VersionResponse(OLLAMA_COMPAT_VERSION))

    async def tags(self, request: web.Request) -> web.Response:
        return json_response(await self.service.tags())

    async def ps(self, request: web.Request) -> web.Response:
        return json_response(await self.service.ps())

    async def show(self, request: web.Request) -> web.Response:
        req = decode(await request.read(), ShowRequest)
        name = req.model or req.name
        if not name:
            raise InvalidRequest("model is required")
        return json_response(await self.service.show(name))

    async def pull(self, request: web.Request) -> web.Response:
        req = decode(await request.read(), PullRequest)
        name = req.model or req.name
        if not name:
            raise InvalidRequest("model is required")
        if self.service.registry.find(name) is None:
            raise Unsupported(
                f"pulling '{name}' is not supported by the built-in model server: put a GGUF file named "
                f"<name>.gguf into models_dir instead"
            )
        # Already here: nothing to download, so "ensure present" succeeds as it would on Ollama.
        body = msgspec.json.encode(ProgressResponse(status="success"))
        if req.stream:
            return web.Response(body=body + b"\n", content_type=NDJSON.media_type)
        return web.Response(body=body, content_type="application/json")

    async def unsupported(self, request: web.Request) -> web.Response:
        what = request.path.removeprefix("/api/").split("/", 1)[0]
        raise Unsupported(f"'{what}' is not supported by the built-in model server")

    # ------------------------------------------------------------------ generation

    async def generate(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter_ns()
        req = decode(await request.read(), GenerateRequest)
        self.service.find(req.model)
        if req.images:
            raise InvalidRequest(f"model '{req.model}' does not support images")
        if req.suffix:
            raise InvalidRequest(f"model '{req.model}' does not support insert (suffix)")
        if req.think:
            raise InvalidRequest(f"model '{req.model}' does not support thinking")
        if not req.prompt and not req.context:
            done_reason = await self._load_or_unload(req.model, req.options, req.keep_alive)
            return json_response(GenerateResponse(model=req.model, created_at=now(), response="", done=True,
                                                  done_reason=done_reason))
        turns = (Turn("system", req.system),) if req.system else ()
        job = _job(
            req.options, req.format, stream=req.stream,
            turns=None if req.raw else (*turns, Turn("user", req.prompt)),
            raw_prompt=req.prompt if req.raw else None,  # raw: the caller formatted everything (system is ignored)
            context=tuple(req.context or ()),
        )

        def chunk(text: str) -> GenerateResponse:
            return GenerateResponse(model=req.model, created_at=now(), response=text, done=False)

        def final(text: str, f: Finished) -> GenerateResponse:
            return GenerateResponse(
                model=req.model, created_at=now(), response=text, done=True, done_reason=f.done_reason,
                context=list(f.context), **_metrics(f, t0),
            )

        enc = Encoders(piece=chunk, last=lambda f: [final("", f)], whole=final, error=ErrorResponse)
        return await respond(request, self.service.generate(req.model, job, req.keep_alive), stream=req.stream,
                             framing=NDJSON, enc=enc)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter_ns()
        req = decode(await request.read(), ChatRequest)
        self.service.find(req.model)
        if req.tools:
            raise InvalidRequest(f"model '{req.model}' does not support tools")
        if req.think:
            raise InvalidRequest(f"model '{req.model}' does not support thinking")
        if any(m.images for m in req.messages):
            raise InvalidRequest(f"model '{req.model}' does not support images")
        if not req.messages:
            done_reason = await self._load_or_unload(req.model, req.options, req.keep_alive)
            return json_response(ChatResponse(model=req.model, created_at=now(), done=True, done_reason=done_reason,
                                              message=ChatMessage(role="assistant", content="")))
        job = _job(req.options, req.format, stream=req.stream,
                   turns=tuple(Turn(m.role, m.content) for m in req.messages))

        def chunk(text: str) -> ChatResponse:
            return ChatResponse(model=req.model, created_at=now(), done=False,
                                message=ChatMessage(role="assistant", content=text))

        def final(text: str, f: Finished) -> ChatResponse:
            return ChatResponse(
                model=req.model, created_at=now(), message=ChatMessage(role="assistant", content=text), done=True,
                done_reason=f.done_reason, **_metrics(f, t0),
            )

        enc = Encoders(piece=chunk, last=lambda f: [final("", f)], whole=final, error=ErrorResponse)
        return await respond(request, self.service.generate(req.model, job, req.keep_alive), stream=req.stream,
                             framing=NDJSON, enc=enc)

    async def _load_or_unload(self, model: str, options: ModelOptions | None, keep_alive: float | str | None) -> str:
        """Ollama's empty request: load the model (warm-up), or unload it when keep_alive is 0."""
        if keep_alive is not None and keep_alive_seconds(keep_alive, 1.0) == 0:
            if (loaded := self.service.runner.loaded) and loaded.name == self.service.find(model).name:
                await self.service.unload()
            return "unload"
        await self.service.load(model, num_ctx=options.num_ctx if options else None, keep_alive=keep_alive)
        return "load"


def _job(
    options: ModelOptions | None,
    fmt: str | dict[str, object] | None,
    *,
    stream: bool,
    turns: tuple[Turn, ...] | None = None,
    raw_prompt: str | None = None,
    context: tuple[int, ...] = (),
) -> Job:
    opts = options or ModelOptions()
    return Job(
        turns=turns, raw_prompt=raw_prompt, context=context, sampling=sampling_from_options(opts),
        max_tokens=max_tokens_from(opts.num_predict), stop=tuple(opts.stop or ()),
        grammar=grammar_from_format(fmt), num_ctx=opts.num_ctx, stream=stream,
    )


def _metrics(f: Finished, t0: int) -> dict[str, int]:
    return {
        "total_duration": time.perf_counter_ns() - t0,
        "load_duration": f.load_ns,
        "prompt_eval_count": f.prompt_tokens,
        "prompt_eval_duration": f.prompt_eval_ns,
        "eval_count": f.eval_count,
        "eval_duration": f.eval_ns,
    }


_UNSUPPORTED = [
    ("POST", "/api/push"), ("POST", "/api/create"), ("POST", "/api/copy"), ("DELETE", "/api/delete"),
    ("POST", "/api/blobs/{digest}"), ("HEAD", "/api/blobs/{digest}"), ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
]

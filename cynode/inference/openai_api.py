"""The OpenAI-compatible subset (`/v1/*`) on the built-in server, as Ollama offers it: chat completions,
completions and the model list. Streams are server-sent events ending with `data: [DONE]`."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from cynode.contracts.inference import (
    OpenAIAssistantMessage,
    OpenAIChatChunk,
    OpenAIChatCompletion,
    OpenAIChatRequest,
    OpenAIChoice,
    OpenAIChunkChoice,
    OpenAICompletion,
    OpenAICompletionChoice,
    OpenAICompletionRequest,
    OpenAIContentPart,
    OpenAIDelta,
    OpenAIError,
    OpenAIErrorBody,
    OpenAIModel,
    OpenAIModelList,
    OpenAIResponseFormat,
    OpenAIUsage,
)
from cynode.inference.generation import Finished, Grammar, InvalidRequest, Job, Sampling
from cynode.inference.ollama_api import decode
from cynode.inference.prompt import Turn
from cynode.inference.service import ModelService, Unsupported
from cynode.inference.streaming import SSE, Encoders, json_response, respond

FINGERPRINT = "fp_cynode"


def openai_error(message: str, status: int) -> OpenAIError:
    kind = "invalid_request_error" if status < 500 or status == 501 else "api_error"
    code = "model_not_found" if status == 404 else None
    return OpenAIError(OpenAIErrorBody(message=message, type=kind, code=code))


class OpenAIApi:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
            web.post("/v1/embeddings", self.embeddings),
        ]

    async def list_models(self, request: web.Request) -> web.Response:
        data = [OpenAIModel(id=e.name, created=int(e.modified_at)) for e in self.service.registry.entries()]
        return json_response(OpenAIModelList(data=data))

    async def get_model(self, request: web.Request) -> web.Response:
        entry = self.service.find(request.match_info["model"])
        return json_response(OpenAIModel(id=entry.name, created=int(entry.modified_at)))

    async def embeddings(self, request: web.Request) -> web.Response:
        raise Unsupported("embeddings are not supported by the built-in model server")

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        req = decode(await request.read(), OpenAIChatRequest)
        self.service.find(req.model)
        if req.tools:
            raise InvalidRequest(f"model '{req.model}' does not support tools")
        turns = tuple(Turn(m.role, _text(m.content)) for m in req.messages)
        job = _job(req.max_completion_tokens or req.max_tokens, req, turns=turns,
                   grammar=_grammar(req.response_format))
        rid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

        def chunk(delta: OpenAIDelta, finish: str | None) -> OpenAIChatChunk:
            return OpenAIChatChunk(id=rid, created=created, model=req.model, system_fingerprint=FINGERPRINT,
                                   choices=[OpenAIChunkChoice(0, delta, finish)])

        def last(f: Finished) -> list[OpenAIChatChunk]:
            out = [chunk(OpenAIDelta(role="assistant", content=""), _finish(f))]
            if req.stream_options and req.stream_options.include_usage:
                out.append(OpenAIChatChunk(id=rid, created=created, model=req.model, system_fingerprint=FINGERPRINT,
                                           choices=[], usage=_usage(f)))
            return out

        def whole(text: str, f: Finished) -> OpenAIChatCompletion:
            return OpenAIChatCompletion(
                id=rid, created=created, model=req.model, system_fingerprint=FINGERPRINT, usage=_usage(f),
                choices=[OpenAIChoice(0, OpenAIAssistantMessage("assistant", text), _finish(f))],
            )

        enc = Encoders(piece=lambda text: chunk(OpenAIDelta(role="assistant", content=text), None), last=last,
                       whole=whole, error=lambda message: openai_error(message, 500))
        return await respond(request, self.service.generate(req.model, job), stream=req.stream, framing=SSE, enc=enc)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        req = decode(await request.read(), OpenAICompletionRequest)
        self.service.find(req.model)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise InvalidRequest("exactly one prompt is supported")
        job = _job(req.max_tokens, req, raw_prompt=prompts[0])
        rid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

        def body(text: str, finish: str | None, f: Finished | None = None) -> OpenAICompletion:
            out = OpenAICompletion(id=rid, created=created, model=req.model, system_fingerprint=FINGERPRINT,
                                   choices=[OpenAICompletionChoice(text, 0, None, finish)])
            if f is not None:
                out.usage = _usage(f)
            return out

        def last(f: Finished) -> list[OpenAICompletion]:
            usage = req.stream_options is not None and req.stream_options.include_usage
            return [body("", _finish(f), f if usage else None)]

        enc = Encoders(piece=lambda text: body(text, None), last=last, whole=lambda t, f: body(t, _finish(f), f),
                       error=lambda message: openai_error(message, 500))
        return await respond(request, self.service.generate(req.model, job), stream=req.stream, framing=SSE, enc=enc)


def _job(
    max_tokens: int | None,
    req: OpenAIChatRequest | OpenAICompletionRequest,
    *,
    turns: tuple[Turn, ...] | None = None,
    raw_prompt: str | None = None,
    grammar: Grammar | None = None,
) -> Job:
    if req.n != 1:
        raise InvalidRequest("only n=1 is supported")
    if max_tokens is not None and max_tokens < 0:
        raise InvalidRequest("max_tokens must not be negative")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    sampling = Sampling(  # OpenAI's defaults (temperature 1, top_p 1) where the request says nothing
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=req.seed,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
    )
    return Job(turns=turns, raw_prompt=raw_prompt, sampling=sampling, stop=stop, grammar=grammar,
               max_tokens=-1 if max_tokens is None else max_tokens, stream=req.stream)


def _text(content: str | list[OpenAIContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if any(p.type != "text" for p in content):
        raise InvalidRequest("only text content parts are supported")
    return "".join(p.text for p in content)


def _grammar(fmt: OpenAIResponseFormat | None) -> Grammar | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return Grammar("json")
    if fmt.type == "json_schema" and fmt.json_schema and isinstance(fmt.json_schema.get("schema"), dict):
        return Grammar("schema", fmt.json_schema["schema"])
    raise InvalidRequest(f"unsupported response_format {fmt.type!r}")


def _finish(f: Finished) -> str:
    return "length" if f.done_reason == "length" else "stop"


def _usage(f: Finished) -> OpenAIUsage:
    return OpenAIUsage(f.prompt_tokens, f.eval_count, f.prompt_tokens + f.eval_count)

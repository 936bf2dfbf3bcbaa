"""An async client for the Ollama API (a real Ollama, the built-in server, or a job's inference proxy).

    async with OllamaClient("http+unix://%2Frun%2Fcynode%2Finference-proxy.sock") as ollama:
        reply = await ollama.chat("gemma3:270m", [{"role": "user", "content": "hi"}])
        async for chunk in await ollama.chat("gemma3:270m", messages, stream=True):
            print(chunk.message.content, end="")

Base URLs: `http(s)://host:port[/prefix]`, `http+unix://<percent-encoded socket path>[/prefix]` or
`unix:///path/to.sock`. Failures raise the typed errors of cynode.inference.errors; HTTP errors are raised when the
call is awaited, before a stream is handed out, so a caller can retry before any output was seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload
from urllib.parse import unquote, urlsplit

import aiohttp
import msgspec

from cynode.contracts.inference import (
    ChatMessage,
    ChatResponse,
    GenerateResponse,
    ModelOptions,
    ProgressResponse,
    PsResponse,
    ShowResponse,
    TagsResponse,
    VersionResponse,
)
from cynode.inference.errors import (
    InferenceConnectionError,
    InferenceError,
    InferenceHTTPError,
    InferenceProtocolError,
    InferenceTimeout,
    http_error,
)
from cynode.utf8 import decode_json

T = TypeVar("T")

Options = ModelOptions | Mapping[str, Any] | None
Message = ChatMessage | Mapping[str, Any]

MAX_LINE_BYTES = 16 * 1024 * 1024  # one NDJSON line (a final /api/generate line carries the token context)
PULL_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    base: str  # http://host:port[/prefix] that request paths are appended to
    socket_path: str | None = None  # set for http+unix:// and unix:// URLs


def parse_base_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    prefix = parts.path.rstrip("/")
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError(f"invalid inference URL {url!r}: no host")
        return Endpoint(f"{parts.scheme}://{parts.netloc}{prefix}")
    if parts.scheme == "http+unix":
        socket_path = unquote(parts.netloc)
        if not socket_path:
            raise ValueError(f"invalid inference URL {url!r}: no socket path")
        return Endpoint(f"http://localhost{prefix}", socket_path)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"invalid inference URL {url!r}: no socket path")
        return Endpoint("http://localhost", unquote(parts.path))
    raise ValueError(f"invalid inference URL {url!r} (expected http://, https://, http+unix:// or unix://)")


class OllamaClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = parse_base_url(base_url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OllamaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ simple calls

    async def version(self) -> str:
        return (await self._json("GET", "/api/version", None, VersionResponse)).version

    async def tags(self) -> TagsResponse:
        return await self._json("GET", "/api/tags", None, TagsResponse)

    async def show(self, model: str) -> ShowResponse:
        return await self._json("POST", "/api/show", {"model": model}, ShowResponse)

    async def ps(self) -> PsResponse:
        return await self._json("GET", "/api/ps", None, PsResponse)

    async def pull(self, model: str, *, timeout: float = PULL_TIMEOUT_S) -> ProgressResponse:
        """Download a model (Ollama waits until done: up to 30 minutes by default); status "success" when done."""
        return await self._json("POST", "/api/pull", {"model": model, "stream": False}, ProgressResponse,
                                timeout=timeout)

    # ------------------------------------------------------------------ generation

    @overload
    async def generate(self, model: str, prompt: str, options: Options = None, stream: Literal[False] = False,
                       **extra: Any) -> GenerateResponse: ...

    @overload
    async def generate(self, model: str, prompt: str, options: Options = None, *, stream: Literal[True],
                       **extra: Any) -> AsyncIterator[GenerateResponse]: ...

    async def generate(
        self, model: str, prompt: str, options: Options = None, stream: bool = False, **extra: Any
    ) -> GenerateResponse | AsyncIterator[GenerateResponse]:
        """/api/generate. `extra`: other request fields (system, format, raw, keep_alive, context, ...)."""
        body = {"model": model, "prompt": prompt, "stream": stream, **_options(options), **extra}
        if stream:
            return await self._stream("/api/generate", body, GenerateResponse)
        return await self._json("POST", "/api/generate", body, GenerateResponse)

    @overload
    async def chat(self, model: str, messages: Sequence[Message], options: Options = None,
                   stream: Literal[False] = False, **extra: Any) -> ChatResponse: ...

    @overload
    async def chat(self, model: str, messages: Sequence[Message], options: Options = None, *,
                   stream: Literal[True], **extra: Any) -> AsyncIterator[ChatResponse]: ...

    async def chat(
        self, model: str, messages: Sequence[Message], options: Options = None, stream: bool = False, **extra: Any
    ) -> ChatResponse | AsyncIterator[ChatResponse]:
        """/api/chat. `extra`: other request fields (format, keep_alive, tools, ...)."""
        msgs = [msgspec.to_builtins(m) if isinstance(m, ChatMessage) else dict(m) for m in messages]
        body = {"model": model, "messages": msgs, "stream": stream, **_options(options), **extra}
        if stream:
            return await self._stream("/api/chat", body, ChatResponse)
        return await self._json("POST", "/api/chat", body, ChatResponse)

    # ------------------------------------------------------------------ transport

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self.endpoint.socket_path) if self.endpoint.socket_path
                else aiohttp.TCPConnector()
            )
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    def _timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total or self.timeout, connect=self.connect_timeout)

    async def _json(
        self, method: str, path: str, body: Any, type_: type[T], *, timeout: float | None = None
    ) -> T:
        data = None if body is None else msgspec.json.encode(body)
        try:
            async with self._http().request(
                method, self.endpoint.base + path, data=data, timeout=self._timeout(timeout),
                headers={"Content-Type": "application/json"} if data is not None else None,
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise http_error(resp.status, _error_text(raw, resp.reason))
        except InferenceError:
            raise
        except Exception as e:
            raise _transport_error(e) from e
        return _decode(raw, type_)

    async def _stream(self, path: str, body: Any, type_: type[T]) -> AsyncIterator[T]:
        """Send now (so HTTP errors raise here); the returned iterator owns the response until it ends."""
        session = self._http()
        try:
            resp = await session.post(
                self.endpoint.base + path, data=msgspec.json.encode(body), timeout=self._timeout(None),
                headers={"Content-Type": "application/json"},
            )
        except Exception as e:
            raise _transport_error(e) from e
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except Exception as e:
                raise _transport_error(e) from e
            finally:
                resp.release()
            raise http_error(resp.status, _error_text(raw, resp.reason))
        return _lines(resp, type_)


async def _lines(resp: aiohttp.ClientResponse, type_: type[T]) -> AsyncIterator[T]:
    buf = b""
    try:
        async for chunk in resp.content.iter_any():
            buf += chunk
            while (nl := buf.find(b"\n")) >= 0:
                line, buf = buf[:nl], buf[nl + 1 :]
                if line.strip():
                    yield _decode(line, type_)
            if len(buf) > MAX_LINE_BYTES:
                raise InferenceProtocolError("stream line too long")
        if buf.strip():
            yield _decode(buf, type_)
    except InferenceError:
        raise
    except Exception as e:
        raise _transport_error(e) from e
    finally:
        resp.release()


def _decode(raw: bytes, type_: type[T]) -> T:
    try:
        obj = decode_json(raw)
    except msgspec.DecodeError:
        raise InferenceProtocolError(f"not JSON: {raw[:200]!r}") from None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        raise InferenceHTTPError(200, obj["error"])  # Ollama reports a failure inside a stream this way
    try:
        return msgspec.convert(obj, type_)
    except msgspec.ValidationError as e:
        raise InferenceProtocolError(f"unexpected answer: {e}") from None


def _error_text(raw: bytes, reason: str | None) -> str:
    try:
        obj = decode_json(raw)
    except msgspec.DecodeError:
        return raw[:500].decode("utf-8", "replace").strip() or (reason or "error")
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, str):
            return err  # Ollama: {"error": "..."}
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])  # OpenAI shape
        if isinstance(obj.get("detail"), str):
            return str(obj["detail"])  # problem+json (e.g. the inference proxy's 403/413/502/504)
    return raw[:500].decode("utf-8", "replace")


def _transport_error(e: BaseException) -> InferenceError:
    if isinstance(e, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return InferenceTimeout("inference request timed out")
    if isinstance(e, aiohttp.ClientError | OSError):
        return InferenceConnectionError(f"inference server unreachable: {e}")
    return InferenceError(str(e))


def _options(options: Options) -> dict[str, Any]:
    if options is None:
        return {}
    if isinstance(options, ModelOptions):
        return {"options": msgspec.to_builtins(options)}
    return {"options": dict(options)}

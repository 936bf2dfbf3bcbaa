"""The async Ollama client: against the real built-in server (TCP and a Unix socket), and against small loopback
servers that misbehave in each way a caller must tell apart."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from cynode.contracts.inference import ChatMessage, ModelOptions
from cynode.inference.client import OllamaClient
from cynode.inference.errors import (
    InferenceBusy,
    InferenceConnectionError,
    InferenceHTTPError,
    InferenceProtocolError,
    InferenceTimeout,
    InferenceUnsupported,
    ModelLoading,
    ModelNotFound,
)
from tests.test_inference_helpers import MODEL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ------------------------------------------------------------------------------------------------ real server


@pytest.mark.model
async def test_client_against_the_built_in_server(model_server: str) -> None:
    async with OllamaClient(model_server, timeout=60) as client:
        assert await client.version()
        assert MODEL in [m.name for m in (await client.tags()).models]
        assert (await client.show(MODEL)).details.family == "gemma3"
        whole = await client.generate(MODEL, "Hi", ModelOptions(num_predict=4, temperature=0), system="Be brief.")
        assert whole.done and whole.eval_count == 4 and whole.response
        stream = await client.chat(MODEL, [ChatMessage(role="user", content="Hi")], {"num_predict": 5}, stream=True)
        chunks = [c async for c in stream]
        assert chunks[-1].done and chunks[-1].eval_count == 5
        assert "".join(c.message.content for c in chunks).strip()
        assert [m.name for m in (await client.ps()).models] == [MODEL]
        assert (await client.pull(MODEL)).status == "success"


@pytest.mark.model
async def test_client_errors_from_the_built_in_server(model_server: str) -> None:
    async with OllamaClient(model_server) as client:
        with pytest.raises(ModelNotFound) as e:
            await client.chat("missing:1b", [{"role": "user", "content": "x"}])
        assert not e.value.retryable and e.value.status == 404
        with pytest.raises(ModelNotFound):
            await client.generate("missing:1b", "x", stream=True)  # raised before any chunk is handed out
        with pytest.raises(InferenceUnsupported):
            await client.pull("llama3:8b")


@pytest.mark.model
async def test_client_over_a_unix_socket(model_server: str) -> None:
    """http+unix:// base URLs: here a loopback relay on a socket in front of the real server."""
    d = Path(tempfile.mkdtemp(prefix="cyn-cli-"))
    sock = d / "ollama.sock"
    relay = await _unix_relay(sock, model_server)
    try:
        async with OllamaClient("http+unix://" + quote(str(sock), safe="")) as client:
            reply = await client.generate(MODEL, "Hi", {"num_predict": 2})
            assert reply.eval_count == 2
        async with OllamaClient(f"unix://{sock}") as client:
            assert await client.version()
    finally:
        await relay.cleanup()
        shutil.rmtree(d, ignore_errors=True)


async def _unix_relay(sock: Path, upstream: str) -> web.AppRunner:
    import aiohttp

    async def relay(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.request(
            request.method, upstream + request.path_qs, data=await request.read(),
        ) as r:
            return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    return runner


# ------------------------------------------------------------------------------------------------ failure kinds


@pytest.fixture
async def fake() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for r in runners:
        await r.cleanup()


async def test_nothing_listening_is_a_retryable_connection_error() -> None:
    async with OllamaClient("http://127.0.0.1:9") as client:
        with pytest.raises(InferenceConnectionError) as e:
            await client.tags()
        assert e.value.retryable
    async with OllamaClient("http+unix://%2Fnonexistent%2Fx.sock") as client:
        with pytest.raises(InferenceConnectionError):
            await client.chat(MODEL, [], stream=True)


async def test_a_slow_server_is_a_retryable_timeout(fake: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"model":"m","created_at":"t","response":"a","done":false}\n')
        await asyncio.sleep(5)
        return resp

    async with OllamaClient(await fake(slow), timeout=0.5) as client:
        with pytest.raises(InferenceTimeout) as e:
            await client.tags()
        assert e.value.retryable
        stream = await client.generate(MODEL, "x", stream=True)
        with pytest.raises(InferenceTimeout):
            [c async for c in stream]  # the timeout covers the whole stream, not just the headers


@pytest.mark.parametrize(("status", "body", "kind", "retryable"), [
    (503, b'{"error":"server busy, please try again. maximum pending requests exceeded"}', InferenceBusy, True),
    (503, b'{"error":"llama runner is still loading the model"}', ModelLoading, True),
    (429, b'{"error":"slow down"}', InferenceBusy, True),
    (502, b'{"type":"urn:cynodeai:error:upstream_unavailable","detail":"backend unreachable"}', InferenceHTTPError,
     True),
    (400, b'{"error":"bad"}', InferenceHTTPError, False),
    (500, b"oops", InferenceHTTPError, False),
    (400, b'{"error":"\xff bad"}', InferenceHTTPError, False),  # not UTF-8 inside the JSON: still typed
])
async def test_http_errors_are_typed(fake: Callable[[Handler], Awaitable[str]], status: int, body: bytes,
                                     kind: type[InferenceHTTPError], retryable: bool) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    async with OllamaClient(await fake(answer)) as client:
        for call in (client.tags(), client.chat(MODEL, [], stream=True)):
            with pytest.raises(kind) as e:
                await call
            assert e.value.status == status and e.value.retryable is retryable
    if status == 502:
        assert e.value.message == "backend unreachable"  # the proxy's problem+json detail is surfaced


async def test_an_error_line_inside_a_stream_and_garbage(fake: Callable[[Handler], Awaitable[str]]) -> None:
    async def stream_error(request: web.Request) -> web.Response:
        if request.path == "/api/tags":
            return web.Response(body=b"<html>not ollama</html>")
        if not (await request.json())["stream"]:
            return web.Response(body=b'{"model":"m","created_at":"\xc3","done":true}')
        return web.Response(body=b'{"model":"m","created_at":"t","message":{"role":"assistant","content":"a"},'
                                 b'"done":false}\n{"error":"model runner crashed"}\n')

    async with OllamaClient(await fake(stream_error)) as client:
        stream = await client.chat(MODEL, [{"role": "user", "content": "x"}], stream=True)
        got = []
        with pytest.raises(InferenceHTTPError, match="model runner crashed"):
            async for c in stream:
                got.append(c.message.content)
        assert got == ["a"]
        with pytest.raises(InferenceProtocolError):
            await client.tags()
        with pytest.raises(InferenceProtocolError):  # JSON whose string is not UTF-8: a protocol error too
            await client.chat(MODEL, [{"role": "user", "content": "x"}])

"""Turn a generation's events into an HTTP answer: one JSON body, or a stream of frames (Ollama's NDJSON lines,
OpenAI's server-sent events) written as each token arrives."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

import msgspec
from aiohttp import web

from cynode.inference.generation import Event, Finished, Piece, Started

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Framing:
    media_type: str
    prefix: bytes
    suffix: bytes
    end: bytes = b""  # written after the last frame


NDJSON = Framing("application/x-ndjson", b"", b"\n")
SSE = Framing("text/event-stream", b"data: ", b"\n\n", end=b"data: [DONE]\n\n")


@dataclass(frozen=True, slots=True)
class Encoders:
    piece: Callable[[str], msgspec.Struct]  # a streamed chunk carrying new text
    last: Callable[[Finished], Sequence[msgspec.Struct]]  # the closing chunk(s) of a stream
    whole: Callable[[str, Finished], msgspec.Struct]  # the single body of a non-streamed answer
    error: Callable[[str], msgspec.Struct]  # an error reported inside a stream


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


async def respond(
    request: web.Request, events: AsyncGenerator[Event, None], *, stream: bool, framing: Framing, enc: Encoders
) -> web.StreamResponse:
    async with contextlib.aclosing(events):
        first = await anext(events)  # load and tokenize first, so their errors still choose the HTTP status
        assert isinstance(first, Started)
        if not stream:
            parts: list[str] = []
            async for event in events:
                if isinstance(event, Piece):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    return json_response(enc.whole("".join(parts), event))
            raise RuntimeError("generation ended without a final event")
        resp = web.StreamResponse(headers={"Content-Type": framing.media_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(body: msgspec.Struct) -> None:
            await resp.write(framing.prefix + msgspec.json.encode(body) + framing.suffix)

        try:
            async for event in events:
                if isinstance(event, Piece):
                    await send(enc.piece(event.text))
                elif isinstance(event, Finished):
                    for body in enc.last(event):
                        await send(body)
            if framing.end:
                await resp.write(framing.end)
        except ConnectionResetError:
            return resp  # the client went away; closing `events` stops the model at its next token
        except Exception as e:  # the status line is out: an error can only be reported in the stream
            log.warning("generation failed mid-stream", extra={"path": request.path, "error": str(e)})
            with contextlib.suppress(ConnectionResetError):
                await send(enc.error(str(e)))
            return resp
        await resp.write_eof()
        return resp

"""Where a chat turn is answered (agents.md §3.5, §3.10): the Project Manager agent for `cynodeai.pm`, direct
inference (`POST {url}/api/chat`) for any other listed model, never one for the other.

Both retry only transient failures, at most 3 attempts with 0.5 s then 1 s between them, and only before the first
content byte: a refused/reset connection, a backend 5xx or busy answer, "model is loading", PMA `busy` or
`inference_failed`. Never 4xx, never once the wait cap passed (the caller runs routing under it), never a cancel.
Failures become the ChatErrors of §3.7 with fixed messages; upstream texts are logged by type only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cynode.contracts.pma import PmaChatRequest, PmaClient, PmaError
from cynode.gateway.chat import errors
from cynode.gateway.chat.errors import ChatError
from cynode.inference.client import OllamaClient
from cynode.inference.errors import (
    InferenceConnectionError,
    InferenceError,
    InferenceHTTPError,
    InferenceTimeout,
    ModelLoading,
    ModelNotFound,
)

log = logging.getLogger("cynode.gateway.chat")

T = TypeVar("T")

RETRY_DELAYS = (0.5, 1.0)  # 3 attempts
PMA_RETRYABLE = ("busy", "inference_failed", "unavailable")


@dataclass(frozen=True, slots=True)
class Piece:
    """Some content of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """The answer is complete."""

    finish_reason: str  # stop | length
    prompt_tokens: int = 0
    completion_tokens: int = 0


Event = Piece | Done


@dataclass(frozen=True, slots=True)
class Answer:
    content: str
    done: Done


class Retryable(Exception):
    """A transient failure; `error` is what the client gets when no attempt is left."""

    def __init__(self, error: ChatError) -> None:
        super().__init__(error.code)
        self.error = error


async def with_retries(attempt: Callable[[], Awaitable[T]], what: str, request_id: str) -> T:
    for n, delay in enumerate((0.0, *RETRY_DELAYS)):
        if delay:
            await asyncio.sleep(delay)
        try:
            return await attempt()
        except Retryable as e:
            log.warning("chat backend failed; %s", "retrying" if n < len(RETRY_DELAYS) else "giving up",
                        extra={"request_id": request_id, "route": what, "error_code": e.error.code, "attempt": n + 1})
            if n == len(RETRY_DELAYS):
                raise e.error from None
    raise errors.inference_failed()  # pragma: no cover - the loop always returns or raises


# -- the Project Manager agent ---------------------------------------------------------------------------------------

def pma_error(e: PmaError, request_id: str) -> ChatError | Retryable:
    if e.code in PMA_RETRYABLE:
        return Retryable(errors.pm_unavailable() if e.code == "unavailable" else errors.inference_failed())
    if e.code == "deadline_exceeded":
        return errors.timeout()
    if e.code == "not_found":  # that endpoint is not a project_manager
        return errors.pm_unavailable()
    if e.code == "invalid_request":  # our handoff was refused: a bug on our side, not the client's
        log.error("the PMA refused the chat handoff", extra={"request_id": request_id})
        return errors.internal()
    return errors.inference_failed()


class PmaRoute:
    name = "pma"

    def __init__(self, client: PmaClient) -> None:
        self.client = client

    async def _attempt(self, req: PmaChatRequest) -> Answer:
        try:
            reply = await self.client.chat(req)
        except PmaError as e:
            err = pma_error(e, req.request_id)
            raise err from None
        except (OSError, ValueError) as e:  # a broken reply of a remote PMA
            log.warning("PMA answer unusable", extra={"request_id": req.request_id, "error": type(e).__name__})
            raise Retryable(errors.inference_failed()) from None
        if not reply.content.strip():
            raise errors.inference_failed()
        usage = reply.usage
        return Answer(reply.content, Done("stop", usage.prompt_tokens if usage else 0,
                                          usage.completion_tokens if usage else 0))

    async def complete(self, req: PmaChatRequest) -> Answer:
        return await with_retries(lambda: self._attempt(req), self.name, req.request_id)

    async def stream(self, req: PmaChatRequest) -> AsyncIterator[Event]:
        """Buffered (agents.md §3.8): the whole answer as one piece."""
        answer = await self.complete(req)
        yield Piece(answer.content)
        yield answer.done


# -- direct inference ------------------------------------------------------------------------------------------------

def inference_error(e: InferenceError) -> ChatError | Retryable:
    if isinstance(e, ModelNotFound):
        return errors.inference_unavailable()
    if isinstance(e, InferenceTimeout):
        return errors.timeout()
    if isinstance(e, InferenceConnectionError | ModelLoading):
        return Retryable(errors.inference_failed())
    if isinstance(e, InferenceHTTPError) and (e.status >= 500 or e.status == 429):
        return Retryable(errors.inference_failed())
    return errors.inference_failed()


def _finish_reason(done_reason: str | None) -> str:
    return "length" if done_reason == "length" else "stop"


@dataclass(frozen=True)
class DirectCall:
    model: str
    messages: list[dict[str, str]]
    options: dict[str, Any]
    request_id: str


class DirectRoute:
    """One pooled client per backend URL (keep-alive connections, no per-request session)."""

    name = "direct_inference"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, OllamaClient] = {}

    def client(self, url: str) -> OllamaClient:
        c = self._clients.get(url)
        if c is None:
            c = self._clients[url] = OllamaClient(url, timeout=self.timeout_s)
        return c

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

    async def _attempt(self, url: str, call: DirectCall) -> Answer:
        try:
            reply = await self.client(url).chat(call.model, call.messages, call.options or None)
        except InferenceError as e:
            raise inference_error(e) from None
        content = reply.message.content if reply.message else ""
        if not content:
            raise errors.inference_failed()
        return Answer(content, Done(_finish_reason(reply.done_reason), reply.prompt_eval_count or 0,
                                    reply.eval_count or 0))

    async def complete(self, url: str, call: DirectCall) -> Answer:
        return await with_retries(lambda: self._attempt(url, call), self.name, call.request_id)

    async def _open(self, url: str, call: DirectCall) -> tuple[list[Event], AsyncIterator[Any]]:
        """Send the request and read up to the first content (or the end), so failures until then can be retried."""
        chunks: AsyncIterator[Any] | None = None
        try:
            chunks = await self.client(url).chat(call.model, call.messages, call.options or None, stream=True)
            first: list[Event] = []
            async for chunk in chunks:
                text = chunk.message.content if chunk.message else ""
                if text:
                    first.append(Piece(text))
                if chunk.done:
                    first.append(Done(_finish_reason(chunk.done_reason), chunk.prompt_eval_count or 0,
                                      chunk.eval_count or 0))
                if first:
                    return first, chunks
            return first, chunks
        except InferenceError as e:
            raise inference_error(e) from None
        except BaseException:
            await _close(chunks)
            raise

    async def stream(self, url: str, call: DirectCall) -> AsyncIterator[Event]:
        first, chunks = await with_retries(lambda: self._open(url, call), self.name, call.request_id)
        try:
            if not any(isinstance(ev, Piece) for ev in first):
                raise errors.inference_failed()  # ended without any content
            for ev in first:
                yield ev
            if isinstance(first[-1], Done):
                return
            async for chunk in chunks:
                text = chunk.message.content if chunk.message else ""
                if text:
                    yield Piece(text)
                if chunk.done:
                    yield Done(_finish_reason(chunk.done_reason), chunk.prompt_eval_count or 0, chunk.eval_count or 0)
                    return
            raise errors.inference_failed()  # the stream ended without its final chunk
        except InferenceError as e:
            err = inference_error(e)
            raise (err.error if isinstance(err, Retryable) else err) from None
        finally:
            await _close(chunks)


async def _close(chunks: AsyncIterator[Any] | None) -> None:
    """Release the backend response now (a client that went away must not keep the model busy)."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()

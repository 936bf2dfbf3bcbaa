"""The OpenAI-compatible chat on the gateway (agents.md §3): `/v1/models` and the Chat Completions pipeline.

The pipeline runs in the mandatory order of §3.4:
  1. admission: the per-user and global concurrency limits (authentication and the rate limit are the guard's);
  2. decode and validate (400), the model must be `cynodeai.pm` or listed for the caller (404);
  3. the project from `OpenAI-Project`, else the caller's default project;
  4. redaction of every message content, before anything is stored, logged or sent to a model;
  5. get-or-create the active thread and append the last user message (redacted);
  6. routing (PMA or direct inference) under the wait cap `[chat] max_wait_s` (504) with retries;
  7. the redacted assistant message appended, only after success (a complete stream);
  8. the response, and one `chat_audit_log` row whatever the outcome (the guard writes `gateway_audit_log`).
A failure after step 5 keeps the user message and writes no assistant message.

Context (§3.5): a client that sends one non-system message (as `cynode chat` does) gets the thread's history prepended
(at most `history_max_messages`, `history_max_chars`, oldest first, the new message always kept); a client that sends
more is forwarded as it is. Streams (§3.8) are fed by a producer task through a queue, so the PMA route can send
`: keep-alive` comments while it waits, errors before the first byte are normal JSON errors, and a client that goes
away cancels the backend call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
import ulid

from cynode.auth.principal import Principal
from cynode.config import Settings
from cynode.contracts.chat import (
    PM_MODEL,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Model,
    ModelList,
    Usage,
    WarmStatus,
)
from cynode.contracts.pma import PmaChatRequest, PmaClient, PmaMessage, PmaProject
from cynode.errors import Invalid, NotFound
from cynode.gateway.chat import errors
from cynode.gateway.chat.audit import ChatAuditRecord, ChatAuditWriter
from cynode.gateway.chat.backends import Answer, DirectCall, DirectRoute, Done, Event, Piece, PmaRoute
from cynode.gateway.chat.errors import ChatError
from cynode.gateway.chat.limits import ChatLimits, Slot
from cynode.gateway.chat.request import ChatInput, Message, audit_model, parse
from cynode.gateway.chat.threads import ThreadService
from cynode.gateway.redaction import merge_kinds, redact_all, redact_async

log = logging.getLogger("cynode.gateway.chat")

T = TypeVar("T")

MODELS_TTL_S = 2.0
PMA_HEALTH_TTL_S = 2.0
WARM_TTL_S = 300.0
WARM_DEADLINE_S = 60.0
COMPLETIONS_ROUTE = "/v1/chat/completions"
PMA_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "system": "system", "user": "user", "assistant": "assistant"}  # tool messages are dropped: the PMA has its own

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ChatLinks:
    """How chat reaches the rest of the orchestrator; read per request (the PMA and backends come and go)."""

    pma: Callable[[], PmaClient | None]
    inference_url: Callable[[], str | None]
    inference_models: Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True)
class ChatCall:
    """One HTTP request to `/v1/chat/completions`, as the route hands it over."""

    request_id: str
    read_body: Callable[[], Awaitable[bytes]]  # ChatError/PayloadTooLarge (413) when over the limit
    project: str | None  # the OpenAI-Project header
    disconnected: Callable[[], Awaitable[None]] | None = None  # returns when the client went away


@dataclass
class Turn:
    """What the pipeline knows about one request once it is routed."""

    call: ChatCall
    principal: Principal
    rec: ChatAuditRecord
    slot: Slot
    inp: ChatInput
    project_id: str
    thread_id: str
    context: list[Message]
    deadline: float
    completion_id: str
    created: int


def _dict(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


async def _or_disconnect(aw: Awaitable[T], disconnected: Callable[[], Awaitable[None]] | None) -> T:
    """Await `aw`, unless the client disconnects first: then it is canceled and the request is 408."""
    if disconnected is None:
        return await aw
    work = asyncio.ensure_future(aw)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
        watch.cancel()
    if work.done() and not work.cancelled():
        return work.result()
    raise errors.canceled()


class ChatService:
    def __init__(self, settings: Settings, threads: ThreadService, audit: ChatAuditWriter, links: ChatLinks) -> None:
        self.settings = settings
        self.chat = settings.chat
        self.threads = threads
        self.audit = audit
        self.links = links
        self.limits = ChatLimits(self.chat.max_concurrent_per_user, self.chat.max_inflight)
        self.direct = DirectRoute(timeout_s=self.chat.request_timeout_s)
        self.started = int(time.time())
        self._models: tuple[float, list[str]] = (0.0, [])
        self._pma_ready_until = 0.0
        self._pma_ready_for: Any = None
        self._warming: dict[str, asyncio.Task[None]] = {}
        self._warm_until: dict[str, float] = {}

    async def stop(self) -> None:
        for task in list(self._warming.values()):
            task.cancel()
        await self.direct.close()
        await self.audit.stop()

    # -- models ----------------------------------------------------------------------------------------------------

    async def listed_models(self) -> list[str]:
        """The direct-inference ids a user may call (none without an inference path), cached for 2 s."""
        at, models = self._models
        now = time.monotonic()
        if now - at > MODELS_TTL_S:
            models = [m for m in await self.links.inference_models() if m != PM_MODEL] \
                if self.links.inference_url() else []
            self._models = (now, models)
        return models

    async def models(self) -> ModelList:
        data = [Model(id=PM_MODEL, created=self.started, owned_by="cynodeai")]
        data += [Model(id=m, created=self.started, owned_by="local") for m in await self.listed_models()]
        return ModelList(data=data)

    async def _route_of(self, model: str) -> str:
        if model == PM_MODEL:
            return PmaRoute.name
        if model in await self.listed_models():
            return DirectRoute.name
        raise errors.model_not_found()

    # -- completions -----------------------------------------------------------------------------------------------

    async def completion(self, principal: Principal, call: ChatCall) -> ChatCompletion | SseStream:
        rec = ChatAuditRecord(request_id=call.request_id, user_id=principal.user_id)
        slot: Slot | None = None
        handed_over = False
        try:
            slot = self.limits.admit(principal.user_id)
            turn = await self._prepare(principal, call, rec, slot)
            if not turn.inp.stream:
                return await self._complete(turn)
            stream = await self._open_stream(turn)
            handed_over = True  # the stream finishes the record and releases the slot
            return stream
        except ChatError as e:
            self._finish(rec, e)
            raise
        except asyncio.CancelledError:
            self._finish(rec, errors.canceled())
            raise
        except Exception as e:
            err = errors.from_exception(e)
            if err.code == "internal_error":
                log.error("chat completion failed", exc_info=e, extra={"request_id": call.request_id})
            self._finish(rec, err)
            raise err from e
        finally:
            if slot is not None and not handed_over:
                slot.release()

    def _finish(self, rec: ChatAuditRecord, err: ChatError | None) -> None:
        if err is None:
            done = rec.finish("success")
        else:
            err.audited = True
            done = rec.finish(err.outcome, err.code)
        if done:
            self.audit.submit(rec)
            if log.isEnabledFor(logging.INFO):  # the route taken, per request (agents.md §3.5); never content
                log.info("chat.completion", extra={
                    "request_id": rec.request_id, "user_id": rec.user_id, "project_id": rec.project_id,
                    "model": rec.model, "path": rec.route, "thread_id": rec.thread_id, "stream": rec.stream,
                    "outcome": rec.outcome, "error_code": rec.error_code, "duration_ms": rec.duration_ms,
                    "redaction_kinds": list(rec.redaction_kinds)})

    def audit_refusal(self, state: dict[str, Any], err: ChatError) -> None:
        """An authenticated completion refused before the service saw it (e.g. the guard's 429) is audited too."""
        principal = state.get("principal")
        if principal is None or err.audited or state.get("route") != COMPLETIONS_ROUTE:
            return
        rec = ChatAuditRecord(request_id=str(state.get("request_id", "")), user_id=principal.user_id)
        self._finish(rec, err)

    async def _project(self, principal: Principal, header: str | None) -> str:
        try:
            return await self.threads.resolve_project(principal, header.strip() if header is not None else None,
                                                      "OpenAI-Project")
        except Invalid:
            raise errors.invalid("OpenAI-Project must be a project UUID", "OpenAI-Project") from None
        except NotFound:
            raise errors.project_not_found() from None

    async def _prepare(self, principal: Principal, call: ChatCall, rec: ChatAuditRecord, slot: Slot) -> Turn:
        """Steps 2-5 of the pipeline."""
        inp = parse(await call.read_body())
        rec.stream, rec.model = inp.stream, audit_model(inp.model)
        rec.route = await self._route_of(inp.model)
        rec.project_id = project_id = await self._project(principal, call.project)
        redacted = await redact_all([m.content for m in inp.messages])
        rec.redaction_kinds = merge_kinds(*(r.kinds for r in redacted))
        messages = [Message(m.role, r.text) for m, r in zip(inp.messages, redacted, strict=True)]
        last = inp.last_user_index
        meta: dict[str, Any] = {"model_id": inp.model, "route": rec.route, "request_id": call.request_id}
        if redacted[last].kinds:
            meta["redaction_kinds"] = list(redacted[last].kinds)
        single = sum(1 for m in messages if m.role != "system") == 1
        start = await self.threads.start_turn(principal.user_id, project_id, messages[last].content, meta,
                                              self.chat.history_max_messages - 1 if single else 0)
        rec.thread_id = start.thread_id
        context = self._with_history(messages, start.history) if single else messages
        return Turn(call=call, principal=principal, rec=rec, slot=slot, inp=inp, project_id=project_id,
                    thread_id=start.thread_id, context=context,
                    deadline=asyncio.get_running_loop().time() + self.chat.max_wait_s,
                    completion_id="chatcmpl-" + ulid.new().str, created=int(time.time()))

    def _with_history(self, messages: list[Message], history: list[tuple[str, str]]) -> list[Message]:
        """The client's system messages, then the newest history that fits the budget, then the new message."""
        system = [m for m in messages if m.role == "system"]
        new = next(m for m in messages if m.role != "system")
        budget = self.chat.history_max_chars - len(new.content)
        kept: list[Message] = []
        for role, content in reversed(history):
            if len(content) > budget:
                break
            budget -= len(content)
            kept.append(Message(role, content))
        return [*system, *reversed(kept), new]

    # -- routing ---------------------------------------------------------------------------------------------------

    async def _pma(self) -> PmaClient:
        pma = self.links.pma()
        if pma is None:
            raise errors.pm_unavailable()
        now = time.monotonic()
        if self._pma_ready_for is not pma or now >= self._pma_ready_until:
            health = await pma.health()
            if health.state != "ready":
                raise errors.pm_unavailable()
            self._pma_ready_for, self._pma_ready_until = pma, now + PMA_HEALTH_TTL_S
        return pma

    async def _pma_request(self, turn: Turn) -> PmaChatRequest:
        ident = await self.threads.project_identity(turn.project_id)
        project = PmaProject(id=ident["id"], slug=ident["slug"], display_name=ident["display_name"]) \
            if ident else None
        remaining_ms = max(1, int((turn.deadline - asyncio.get_running_loop().time()) * 1000))
        msgs = [PmaMessage(role=PMA_ROLES[m.role], content=m.content) for m in turn.context if m.role in PMA_ROLES]
        msgs = msgs[-1000:]
        return PmaChatRequest(version=1, request_id=turn.call.request_id, user_id=turn.principal.user_id,
                              project_id=turn.project_id, thread_id=turn.thread_id, messages=msgs,
                              deadline_ms=remaining_ms, project=project)

    def _direct_call(self, turn: Turn) -> tuple[str, DirectCall]:
        url = self.links.inference_url()
        if url is None:
            raise errors.inference_unavailable()
        return url, DirectCall(model=turn.inp.model, messages=_dict(turn.context), options=turn.inp.options,
                               request_id=turn.call.request_id)

    async def _answer(self, turn: Turn) -> Answer:
        try:
            async with asyncio.timeout_at(turn.deadline):
                if turn.rec.route == PmaRoute.name:
                    pma = await self._pma()
                    return await PmaRoute(pma).complete(await self._pma_request(turn))
                url, call = self._direct_call(turn)
                return await self.direct.complete(url, call)
        except TimeoutError:
            raise errors.timeout() from None

    async def _events(self, turn: Turn) -> AsyncIterator[Event]:
        if turn.rec.route == PmaRoute.name:
            pma = await self._pma()
            async for ev in PmaRoute(pma).stream(await self._pma_request(turn)):
                yield ev
        else:
            url, call = self._direct_call(turn)
            async for ev in self.direct.stream(url, call):
                yield ev

    async def _store_answer(self, turn: Turn, content: str, done: Done) -> str:
        """Step 7: the redacted answer appended to the thread; returns it."""
        red = await redact_async(content)
        turn.rec.redaction_kinds = merge_kinds(turn.rec.redaction_kinds, red.kinds)
        meta: dict[str, Any] = {"model_id": turn.inp.model, "route": turn.rec.route,
                                "request_id": turn.call.request_id,
                                "usage": {"prompt_tokens": done.prompt_tokens,
                                          "completion_tokens": done.completion_tokens}}
        if red.kinds:
            meta["redaction_kinds"] = list(red.kinds)
        await self.threads.finish_turn(turn.thread_id, red.text, meta)
        return red.text

    async def _complete(self, turn: Turn) -> ChatCompletion:
        answer = await _or_disconnect(self._answer(turn), turn.call.disconnected)
        content = await self._store_answer(turn, answer.content, answer.done)
        self._finish(turn.rec, None)
        d = answer.done
        return ChatCompletion(
            id=turn.completion_id, created=turn.created, model=turn.inp.model,
            choices=[Choice(index=0, message=AssistantMessage(content=content), finish_reason=d.finish_reason)],
            usage=Usage(d.prompt_tokens, d.completion_tokens, d.prompt_tokens + d.completion_tokens))

    async def _open_stream(self, turn: Turn) -> SseStream:
        stream = SseStream(self, turn)
        stream.start()
        try:
            await _or_disconnect(stream.wait_first(), turn.call.disconnected)
        except BaseException:
            stream.cancel()
            raise
        return stream

    # -- warm-up ---------------------------------------------------------------------------------------------------

    async def warm(self, model: str | None) -> WarmStatus:
        """Start (once) a background warm-up of the model; 202 at once, failures only logged (§3.11)."""
        mid = model.strip() if model and model.strip() else PM_MODEL
        if mid != PM_MODEL and mid not in await self.listed_models():
            raise errors.model_not_found()
        if mid in self._warming:
            return WarmStatus(status="warming")
        if self._warm_until.get(mid, 0.0) > time.monotonic():
            return WarmStatus(status="already_warm")
        task = asyncio.create_task(self._warm(mid), name=f"chat-warm-{mid}")
        self._warming[mid] = task
        task.add_done_callback(lambda _t: self._warming.pop(mid, None))
        return WarmStatus(status="warming")

    async def _warm(self, model: str) -> None:
        try:
            async with asyncio.timeout(WARM_DEADLINE_S):
                if model == PM_MODEL:
                    pma = await self._pma()
                    await pma.chat(PmaChatRequest(
                        version=1, request_id="warm-" + ulid.new().str, user_id="00000000-0000-0000-0000-000000000000",
                        project_id="00000000-0000-0000-0000-000000000000",
                        messages=[PmaMessage(role="user", content="Reply with OK.")],
                        deadline_ms=int(WARM_DEADLINE_S * 1000)))
                else:
                    url = self.links.inference_url()
                    if url is None:
                        raise errors.inference_unavailable()
                    await self.direct.client(url).generate(model, "hi", {"num_predict": 1})
            self._warm_until[model] = time.monotonic() + WARM_TTL_S
        except asyncio.CancelledError:
            raise
        except Exception as e:  # best effort: logged only
            log.warning("chat warm-up failed", extra={"model": model, "error": type(e).__name__})


class SseStream:
    """A streamed completion (agents.md §3.8): a producer task runs the route and queues its events; `body()` turns
    them into SSE, with `: keep-alive` comments while nothing arrives, and finishes the turn (the assistant message
    after a complete stream, the audit row whatever happens, the concurrency slot)."""

    def __init__(self, service: ChatService, turn: Turn) -> None:
        self.service = service
        self.turn = turn
        self.queue: asyncio.Queue[Event | ChatError] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.first: Event | ChatError | None = None
        self.keepalive_s = service.chat.keepalive_s
        self.outcome: ChatError | None = errors.canceled()  # until the stream gets to an end

    def start(self) -> None:
        self.task = asyncio.create_task(self._produce(), name=f"chat-stream-{self.turn.call.request_id}")

    async def _produce(self) -> None:
        try:
            async with asyncio.timeout_at(self.turn.deadline):
                async for ev in self.service._events(self.turn):
                    self.queue.put_nowait(ev)
        except TimeoutError:
            self.queue.put_nowait(errors.timeout())
        except ChatError as e:
            self.queue.put_nowait(e)
        except Exception as e:
            log.error("chat stream failed", exc_info=e, extra={"request_id": self.turn.call.request_id})
            self.queue.put_nowait(errors.internal())

    async def wait_first(self) -> None:
        """Wait for the first event up to the keep-alive interval; an error by then is a normal JSON error."""
        try:
            async with asyncio.timeout(self.keepalive_s):
                self.first = await self.queue.get()
        except TimeoutError:
            return
        if isinstance(self.first, ChatError):
            raise self.first

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def close(self) -> None:
        """Finish the turn once: stop the producer, write the audit row, free the concurrency slot."""
        self.cancel()
        self.service._finish(self.turn.rec, self.outcome)
        self.turn.slot.release()

    def __del__(self) -> None:  # a stream whose body was never iterated (the client left before it began)
        if not self.turn.rec.done:
            with contextlib.suppress(Exception):  # e.g. no running loop at interpreter exit
                self.close()

    def _chunk(self, delta: Delta, finish: str | None = None) -> bytes:
        t = self.turn
        return b"data: " + _encode(ChatCompletionChunk(
            id=t.completion_id, object="chat.completion.chunk", created=t.created, model=t.inp.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])) + b"\n\n"

    def _usage_chunk(self, done: Done) -> bytes:
        t = self.turn
        usage = Usage(done.prompt_tokens, done.completion_tokens, done.prompt_tokens + done.completion_tokens)
        return b"data: " + _encode(ChatCompletionChunk(
            id=t.completion_id, object="chat.completion.chunk", created=t.created, model=t.inp.model, choices=[],
            usage=usage)) + b"\n\n"

    async def body(self) -> AsyncIterator[bytes]:
        t = self.turn
        parts: list[str] = []
        try:
            yield self._chunk(Delta(role="assistant"))
            ev = self.first
            while True:
                if ev is None:
                    try:
                        async with asyncio.timeout(self.keepalive_s):
                            ev = await self.queue.get()
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                if isinstance(ev, Piece):
                    parts.append(ev.text)
                    yield self._chunk(Delta(content=ev.text))
                elif isinstance(ev, Done):
                    await self.service._store_answer(t, "".join(parts), ev)
                    self.outcome = None
                    yield self._chunk(Delta(), ev.finish_reason)
                    if t.inp.include_usage:
                        yield self._usage_chunk(ev)
                    yield b"data: [DONE]\n\n"
                    return
                else:
                    self.outcome = ev
                    yield b"data: " + errors.error_body(ev) + b"\n\n"
                    yield b"data: [DONE]\n\n"
                    return
                ev = None
        except Exception as e:
            self.outcome = errors.from_exception(e)
            log.error("chat stream failed", exc_info=e, extra={"request_id": t.call.request_id})
            yield b"data: " + errors.error_body(self.outcome) + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            self.close()

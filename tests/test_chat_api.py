"""The OpenAI-compatible chat on the gateway (agents.md §3), over real HTTP: the production gateway app on a real
listener, a fresh migrated database per test, the real in-process PMA and the real built-in model server.

Other chat test modules import the fixtures from here. Stand-ins are used only where a real backend cannot show the
behaviour on demand: an inference server that never answers (wait cap, concurrency) and a flaky proxy in front of
the real model server (retries, and what the model is sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from cynode.config import PmaSettings, Settings, load_settings
from cynode.db.pool import Database
from cynode.gateway.services import GatewayServices
from cynode.gateway.wiring import start_gateway
from cynode.http.server import Listener, bind
from cynode.orchestrator import Orchestrator
from cynode.pma.bundles import load_bundle
from cynode.pma.service import PmaService

ADMIN_PASSWORD = "admin-password-for-chat-tests"
JWT_SECRET = b"c" * 48
MODEL = "gemma3:270m"
UNREACHABLE = "http://127.0.0.1:9"
SECRETS = {
    "api_key": "sk-live0123456789abcdefghijklmnop",
    "token": "ghp_" + "Z" * 36,
    "password": "password=hunter2-very-secret",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretkeybody\n-----END RSA PRIVATE KEY-----",
}


# -- the built-in model server and stand-ins ------------------------------------------------------------------------



@dataclass
class StandIn:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many /api/chat calls with 503 "model is loading"
    status: int = 503
    message: str = "model is loading"
    cut_after: int = 0  # drop the connection after forwarding this many chunks of a stream (0: never)


@pytest.fixture
async def flaky_proxy(model_server: str) -> AsyncIterator[StandIn]:
    """A proxy in front of the real model server that records what it is sent and can fail on demand."""
    state = StandIn(url="")

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        state.bodies.append(body)
        if state.fail_next > 0:
            state.fail_next -= 1
            return web.json_response({"error": state.message}, status=state.status)
        async with aiohttp.ClientSession() as s, s.post(model_server + "/api/chat", json=body) as up:
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["Content-Type"]})
            await resp.prepare(request)
            sent = 0
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
                sent += 1
                if state.cut_after and sent >= state.cut_after:
                    assert request.transport is not None
                    request.transport.close()  # the backend dies mid-answer
                    return resp
            await resp.write_eof()
            return resp

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


@pytest.fixture
async def silent_backend() -> AsyncIterator[str]:
    """An inference server that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for w in writers:
        w.close()
    server.close()


# -- the gateway ----------------------------------------------------------------------------------------------------

@dataclass
class ChatEnv:
    orch: Orchestrator
    listener: Listener
    http: httpx.AsyncClient
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.listener.port}"

    @property
    def services(self) -> GatewayServices:
        gw: GatewayServices = self.orch.gateway
        return gw

    async def login(self, handle: str, password: str) -> dict[str, str]:
        r = await self.http.post("/v1/auth/login", json={"handle": handle, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": "Bearer " + r.json()["access_token"]}

    async def user(self, handle: str, password: str = "user-password-1") -> dict[str, str]:
        """Create a user (as the admin) and return that user's auth headers."""
        if not self.admin:
            self.admin = await self.login("admin", ADMIN_PASSWORD)
        r = await self.http.post("/v1/users", json={"handle": handle, "password": password}, headers=self.admin)
        assert r.status_code == 201, r.text
        return await self.login(handle, password)

    async def personal_token(self, headers: dict[str, str]) -> str:
        r = await self.http.post("/v1/auth/tokens", json={"name": "chat-client"}, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def user_id(self, headers: dict[str, str]) -> str:
        return str((await self.http.get("/v1/users/me", headers=headers)).json()["id"])

    async def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        assert self.orch.db is not None
        async with self.orch.db.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def audit(self) -> list[dict[str, Any]]:
        """chat_audit_log rows, oldest first, after the writer flushed."""
        assert self.services.chat is not None
        assert await self.services.chat.audit.flush()
        return await self.rows("SELECT * FROM chat_audit_log ORDER BY created_at")

    async def messages(self) -> list[dict[str, Any]]:
        return await self.rows("SELECT m.role, m.content, m.metadata, m.thread_id::text AS thread_id "
                               "FROM chat_messages m ORDER BY m.created_at")

    def chat(self, headers: dict[str, str], **body: Any) -> Any:
        body.setdefault("messages", [{"role": "user", "content": "Say hi."}])
        return self.http.post("/v1/chat/completions", json=body, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()
        await self.listener.stop()
        await self.services.stop()


def pma_service(inference_url: str, max_answer_tokens: int = 8) -> PmaService:
    s = PmaSettings(max_answer_tokens=max_answer_tokens)
    return PmaService(s, load_bundle(s, "project_manager"), inference_url=lambda: inference_url, model=lambda: MODEL)


MakeChat = Callable[..., Any]


@pytest.fixture
async def make_chat(tmp_path: Path, db_url: str, database: Database,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeChat]:
    """`await make_chat(inference_url=..., pma=..., env={...})`: the production gateway app on a real port."""
    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    opened: list[ChatEnv] = []

    async def make(*, inference_url: str | None = None, pma: Any = None, env: dict[str, str] | None = None,
                   model: str | None = MODEL) -> ChatEnv:
        environ = {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url, **(env or {})}
        if inference_url:
            environ["INFERENCE_URL"] = inference_url
        if model:
            environ["INFERENCE_MODEL"] = model
        settings: Settings = load_settings(None, environ)
        orch = Orchestrator(settings)
        orch.db = database
        orch.jwt_secret = JWT_SECRET
        orch.pma_client = pma
        orch.gateway = await start_gateway(orch)
        orch.accepting = True
        listener = Listener("gateway", orch.gateway_app, bind("127.0.0.1:0"))
        listener.start()
        await listener.started()
        chat_env = ChatEnv(orch, listener, httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}",
                                                             timeout=180))
        opened.append(chat_env)
        return chat_env

    yield make
    for e in opened:
        await e.close()


def assert_openai_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.headers["openai-version"] == "2020-10-01" and r.headers["x-request-id"]
    err = r.json()["error"]
    assert err["type"] == "cynodeai_error" and err["code"] == code, err
    assert err["param"] == param, err
    assert err["message"] and "Traceback" not in err["message"] and "127.0.0.1" not in err["message"]
    return dict(err)


def sse_events(text: str) -> tuple[list[Any], list[str]]:
    """(data payloads decoded, comment lines) of an SSE body."""
    data: list[Any] = []
    comments: list[str] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("data: "):
                payload = line[len("data: "):]
                data.append(payload if payload == "[DONE]" else json.loads(payload))
    return data, comments


# -- models, auth, validation (no model needed) ---------------------------------------------------------------------

async def test_models_list_pm_first_then_the_models_users_may_call(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    r = await env.http.get("/v1/models", headers=h)
    assert r.status_code == 200 and r.headers["openai-version"] == "2020-10-01" and r.headers["x-request-id"]
    body = r.json()
    assert body["object"] == "list"
    assert [(m["id"], m["owned_by"], m["object"]) for m in body["data"]] == [
        ("cynodeai.pm", "cynodeai", "model"), (MODEL, "local", "model")]
    assert all(isinstance(m["created"], int) for m in body["data"])


async def test_without_an_inference_path_only_the_pm_is_listed_and_direct_ids_are_404(make_chat: MakeChat) -> None:
    env = await make_chat()
    h = await env.user("ann")
    assert [m["id"] for m in (await env.http.get("/v1/models", headers=h)).json()["data"]] == ["cynodeai.pm"]
    assert_openai_error(await env.chat(h, model=MODEL), 404, "model_not_found", "model")


async def test_auth_and_rate_limit_errors_are_openai_shaped(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer cyn_pat_not-a-real-token"}):
        for r in (await env.http.get("/v1/models", headers=headers), await env.chat(headers)):
            assert_openai_error(r, 401, "authentication_required")
            assert r.headers["www-authenticate"] == "Bearer"
    h = await env.user("ann")
    uid = await env.user_id(h)
    limiter = env.services.user_limiter
    limiter.per_min, limiter.rate = 1, 1 / 60
    limiter._buckets.clear()
    assert (await env.http.get("/v1/models", headers=h)).status_code == 200
    r = await env.chat(h)
    assert_openai_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    [row] = await env.audit()  # authenticated, refused by the guard: still audited
    assert row["outcome"] == "error" and row["error_code"] == "rate_limit_exceeded" and str(row["user_id"]) == uid


@pytest.mark.parametrize(("body", "code", "param"), [
    ({"messages": [{"role": "system", "content": "rules"}, {"role": "assistant", "content": "hi"}]},
     "invalid_request", "messages"),
    ({"messages": []}, "invalid_request", "messages"),
    ({"messages": "hi"}, "invalid_request", "messages"),
    ({}, "invalid_request", None),
    ({"n": 2, "messages": [{"role": "user", "content": "hi"}]}, "invalid_request", "n"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "unsupported_content", "messages[0].content"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "invalid_request", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "invalid_request", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "  "}]}, "invalid_request", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "a\u0000b"}]}, "invalid_request", "messages[0].content"),
    ({"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}, "invalid_request", "max_tokens"),
    ({"temperature": 3, "messages": [{"role": "user", "content": "hi"}]}, "invalid_request", "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"], "messages": [{"role": "user", "content": "hi"}]}, "invalid_request", "stop"),
    ({"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}, "invalid_request", "stream"),
])
async def test_invalid_requests_are_400_and_store_nothing(make_chat: MakeChat, body: dict[str, Any], code: str,
                                                          param: str | None) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    r = await env.http.post("/v1/chat/completions", json=body, headers=h)
    assert_openai_error(r, 400, code, param)
    assert await env.messages() == []
    [row] = await env.audit()
    assert row["outcome"] == "error" and row["error_code"] == code


async def test_bad_json_is_400(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    r = await env.http.post("/v1/chat/completions", content=b"{not json", headers=h)
    assert_openai_error(r, 400, "invalid_request")


async def test_unknown_fields_are_ignored_and_text_parts_are_joined(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)  # no PMA: the request gets as far as routing
    h = await env.user("ann")
    r = await env.chat(h, user="someone", logprobs=True, frequency_penalty=0.5, messages=[
        {"role": "developer", "content": "be brief", "name": "x"},
        {"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}],
         "extra": {"a": 1}}])
    assert_openai_error(r, 503, "cynodeai_pm_unavailable")
    assert r.headers["retry-after"] == "5"
    [msg] = await env.messages()  # a failure after the thread step keeps the user message, and nothing else
    assert msg["role"] == "user" and msg["content"] == "line one\nline two"
    assert msg["metadata"]["route"] == "pma" and msg["metadata"]["model_id"] == "cynodeai.pm"


async def test_unknown_model_is_404_and_nothing_is_stored(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    for model in ("gpt-4o", "GEMMA3:270M", f" {MODEL}"):  # exact and case-sensitive
        assert_openai_error(await env.chat(h, model=model), 404, "model_not_found", "model")
    assert await env.messages() == []
    assert [r["error_code"] for r in await env.audit()] == ["model_not_found"] * 3


async def test_body_over_10_mib_is_413_and_nothing_is_stored(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]}).encode()
    r = await env.http.post("/v1/chat/completions", content=big, headers={**h, "content-type": "application/json"})
    assert_openai_error(r, 413, "payload_too_large")
    assert await env.messages() == []
    [row] = await env.audit()
    assert row["error_code"] == "payload_too_large"


async def test_pma_missing_not_ready_or_failing(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    for pma in (None, PmaService(PmaSettings(), load_bundle(PmaSettings(), "project_manager"),
                                 inference_url=lambda: None, model=lambda: None)):  # none, then one "starting"
        env.orch.pma_client = pma
        for model in (None, "", "  ", "cynodeai.pm"):
            r = await env.chat(h, model=model)
            assert_openai_error(r, 503, "cynodeai_pm_unavailable")
            assert r.headers["retry-after"] == "5"
    r = await env.chat(h, stream=True)  # an error known before the first byte is a normal JSON error
    assert_openai_error(r, 503, "cynodeai_pm_unavailable")
    env.orch.pma_client = pma_service(UNREACHABLE)  # ready, but its model is unreachable: retried, then 502
    assert_openai_error(await env.chat(h), 502, "cynodeai_inference_failed")
    rows = await env.audit()
    assert {(r["route"], r["outcome"], r["error_code"], r["model"]) for r in rows[:-1]} == {
        ("pma", "error", "cynodeai_pm_unavailable", "cynodeai.pm")}
    assert [r["stream"] for r in rows] == [False] * 8 + [True, False]
    assert rows[-1]["error_code"] == "cynodeai_inference_failed"
    assert [m["role"] for m in await env.messages()] == ["user"] * 10


async def test_the_openai_project_header_picks_the_project(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    ann = await env.user("ann")
    ben = await env.user("ben")
    assert_openai_error(await env.http.post("/v1/chat/completions", headers={**ann, "OpenAI-Project": "nope"},
                                            json={"messages": [{"role": "user", "content": "hi"}]}),
                        400, "invalid_request", "OpenAI-Project")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_openai_error(await env.http.post("/v1/chat/completions", headers={**ann, "OpenAI-Project": unknown},
                                            json={"messages": [{"role": "user", "content": "hi"}]}),
                        404, "project_not_found", "OpenAI-Project")
    r = await env.http.post("/v1/chat/threads", json={}, headers=ben)
    bens_project = r.json()["project_id"]
    assert_openai_error(await env.http.post("/v1/chat/completions", headers={**ann, "OpenAI-Project": bens_project},
                                            json={"messages": [{"role": "user", "content": "hi"}]}),
                        404, "project_not_found", "OpenAI-Project")
    r = await env.http.post("/v1/chat/completions", headers={**ben, "OpenAI-Project": bens_project},
                            json={"messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(r, 503, "cynodeai_pm_unavailable")  # got past the project step
    rows = await env.audit()
    assert str(rows[-1]["project_id"]) == bens_project


async def test_unreachable_backend_is_retried_then_502(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    t0 = asyncio.get_running_loop().time()
    assert_openai_error(await env.chat(h, model=MODEL), 502, "cynodeai_inference_failed")
    assert asyncio.get_running_loop().time() - t0 >= 1.4  # 3 attempts: 0.5 s then 1 s between them
    [row] = await env.audit()
    assert (row["route"], row["outcome"], row["error_code"]) == ("direct_inference", "error",
                                                                  "cynodeai_inference_failed")


async def test_wait_cap_is_504(make_chat: MakeChat, silent_backend: str) -> None:
    env = await make_chat(inference_url=silent_backend, env={"CYNODE_CHAT_MAX_WAIT_S": "10"})
    h = await env.user("ann")
    assert_openai_error(await env.chat(h, model=MODEL), 504, "cynodeai_completion_timeout")
    [row] = await env.audit()
    assert row["outcome"] == "timeout" and 10_000 <= row["duration_ms"] < 12_000
    assert [m["role"] for m in await env.messages()] == ["user"]


async def test_concurrency_per_user_429_global_503_and_disconnects_cancel(make_chat: MakeChat,
                                                                          silent_backend: str) -> None:
    env = await make_chat(inference_url=silent_backend, env={"CYNODE_CHAT_MAX_INFLIGHT": "6"})
    ann = await env.user("ann")
    ben = await env.user("ben")
    chat = env.services.chat
    assert chat is not None

    async def hold(h: dict[str, str], n: int, stream: bool) -> list[asyncio.Task[Any]]:
        before = chat.limits.total
        tasks = [asyncio.create_task(env.chat(h, model=MODEL, stream=stream)) for _ in range(n)]
        while chat.limits.total < before + n:
            await asyncio.sleep(0.02)
        return tasks

    held = await hold(ann, 4, stream=False)
    r = await env.chat(ann, model=MODEL)
    assert_openai_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    held += await hold(ben, 2, stream=True)
    cy = await env.user("cy")
    r = await env.chat(cy, model=MODEL)
    assert_openai_error(r, 503, "cynodeai_overloaded")
    assert r.headers["retry-after"] == "5"
    for t in held:  # the clients go away: the backend calls are canceled, the slots freed, the turns audited
        t.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    for _ in range(200):
        if chat.limits.total == 0:
            break
        await asyncio.sleep(0.05)
    assert chat.limits.total == 0 and chat.limits.by_user == {}
    rows = await env.audit()
    outcomes = sorted((r["outcome"], r["error_code"], r["stream"]) for r in rows)
    assert outcomes == sorted([("canceled", "cynodeai_request_canceled", False)] * 4
                              + [("canceled", "cynodeai_request_canceled", True)] * 2
                              + [("error", "rate_limit_exceeded", False), ("error", "cynodeai_overloaded", False)])
    assert all(m["role"] == "user" for m in await env.messages())  # no assistant message for a canceled turn


async def test_warm_up_answers_at_once_and_refuses_unknown_models(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    h = await env.user("ann")
    r = await env.http.post("/v1/chat/warm", json={"model": "nope"}, headers=h)
    assert_openai_error(r, 404, "model_not_found", "model")
    assert_openai_error(await env.http.post("/v1/chat/warm", params={"model": "nope"}, headers=h), 404,
                        "model_not_found", "model")
    assert_openai_error(await env.http.post("/v1/chat/warm", content=b"[1]", headers=h), 400, "invalid_request")
    for body in ({}, {"model": MODEL}):  # failures (no PMA, backend unreachable) are only logged
        r = await env.http.post("/v1/chat/warm", json=body, headers=h)
        assert r.status_code == 202 and r.json() == {"status": "warming"}, r.text
        assert r.headers["openai-version"] == "2020-10-01"
    assert_openai_error(await env.http.post("/v1/chat/warm"), 401, "authentication_required")
    assert await env.audit() == []  # warm-ups are not chat completions


async def test_an_error_after_the_stream_began_is_an_error_event(make_chat: MakeChat) -> None:
    env = await make_chat(inference_url=UNREACHABLE, pma=pma_service(UNREACHABLE),
                          env={"CYNODE_CHAT_KEEPALIVE_S": "0.1"})
    h = await env.user("ann")
    r = await env.chat(h, stream=True)  # the PMA retries for 1.5 s: keep-alives first, so the error comes in-stream
    assert r.status_code == 200
    data, comments = sse_events(r.text)
    assert comments and data[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert data[-2] == {"error": {"message": "the model failed to produce an answer", "type": "cynodeai_error",
                                  "param": None, "code": "cynodeai_inference_failed"}}
    assert data[-1] == "[DONE]" and len(data) == 3
    [row] = await env.audit()
    assert (row["outcome"], row["error_code"], row["stream"]) == ("error", "cynodeai_inference_failed", True)
    assert [m["role"] for m in await env.messages()] == ["user"]


# -- with the real model --------------------------------------------------------------------------------------------

@pytest.mark.model
async def test_warm_up_loads_the_model_once(make_chat: MakeChat, model_server: str) -> None:
    env = await make_chat(inference_url=model_server, pma=pma_service(model_server))
    h = await env.user("ann")
    chat = env.services.chat
    assert chat is not None
    # The real warm-up, held at a gate until both requests are in: a loaded model warms up faster than a round trip.
    gate, started, real_warm = asyncio.Event(), [], chat._warm

    async def gated(model: str) -> None:
        started.append(model)
        await gate.wait()
        await real_warm(model)

    chat._warm = gated  # type: ignore[method-assign]
    for model in (MODEL, "cynodeai.pm"):
        gate.clear()
        first = await env.http.post("/v1/chat/warm", params={"model": model}, headers=h)
        again = await env.http.post("/v1/chat/warm", json={"model": model}, headers=h)
        assert (first.status_code, first.json(), again.json()) == (202, {"status": "warming"}, {"status": "warming"})
        gate.set()
        await asyncio.wait_for(asyncio.gather(*chat._warming.values()), 60)
        assert started.count(model) == 1  # one background warm-up, deduplicated
        done = await env.http.post("/v1/chat/warm", json={"model": model}, headers=h)
        assert done.status_code == 202 and done.json() == {"status": "already_warm"}
    assert await env.messages() == []  # nothing is written to any thread



@pytest.mark.model
async def test_official_openai_client_with_a_personal_token(make_chat: MakeChat, model_server: str) -> None:
    from openai import AsyncOpenAI

    env = await make_chat(inference_url=model_server, pma=pma_service(model_server))
    token = await env.personal_token(await env.user("ann"))
    client = AsyncOpenAI(base_url=env.base + "/v1", api_key=token, max_retries=0)
    try:
        models = [m.id async for m in client.models.list()]
        assert models[0] == "cynodeai.pm" and MODEL in models
        done = await client.chat.completions.create(model="cynodeai.pm",
                                                    messages=[{"role": "user", "content": "Say hello."}])
        assert done.id.startswith("chatcmpl-") and len(done.id) == len("chatcmpl-") + 26
        assert done.model == "cynodeai.pm" and done.object == "chat.completion"
        assert done.choices[0].message.role == "assistant" and done.choices[0].message.content
        assert done.choices[0].finish_reason in ("stop", "length")
        assert done.usage is not None and done.usage.completion_tokens > 0
        assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
        stream = await client.chat.completions.create(model="cynodeai.pm", stream=True,
                                                      messages=[{"role": "user", "content": "Say hello again."}])
        chunks = [c async for c in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert len({c.id for c in chunks}) == 1
        direct = await client.chat.completions.create(
            model=MODEL, stream=True, max_tokens=4, seed=7, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Count: one, two,"}])
        chunks = [c async for c in direct]
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert 0 < chunks[-1].usage.completion_tokens <= 4
        assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    finally:
        await client.close()
    stored = await env.messages()
    assert [m["role"] for m in stored] == ["user", "assistant"] * 3
    assert len({m["thread_id"] for m in stored}) == 1  # one active thread for the user's default project
    assert stored[1]["content"] == done.choices[0].message.content
    assert stored[3]["content"] == text
    assert stored[1]["metadata"]["usage"]["completion_tokens"] > 0
    rows = await env.audit()
    assert [(r["route"], r["outcome"], r["stream"]) for r in rows] == [
        ("pma", "success", False), ("pma", "success", True), ("direct_inference", "success", True)]
    assert all(r["thread_id"] == rows[0]["thread_id"] and r["duration_ms"] >= 0 for r in rows)
    for r in rows:  # never content
        assert "hello" not in json.dumps(r, default=str).lower()
    await env.services.audit.flush()
    gateway = await env.rows("SELECT action, resource_type, status_code FROM gateway_audit_log "
                             "WHERE route = '/v1/chat/completions'")
    assert [(g["action"], g["resource_type"], g["status_code"]) for g in gateway] == [("completion", "chat", 200)] * 3


@pytest.mark.model
async def test_secrets_are_redacted_before_the_model_and_storage(make_chat: MakeChat, flaky_proxy: StandIn,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = await make_chat(inference_url=flaky_proxy.url)
    h = await env.user("ann")
    pasted = "Here is my config:\n" + "\n".join(SECRETS.values()) + "\nWhat do you think?"
    r = await env.chat(h, model=MODEL, max_tokens=2, messages=[
        {"role": "system", "content": "api_key: sk-another0123456789abcdefgh"},
        {"role": "user", "content": pasted}])
    assert r.status_code == 200, r.text
    sent = "\n".join(m["content"] for b in flaky_proxy.bodies for m in b["messages"])
    [msg, _answer] = await env.messages()
    for secret in (*SECRETS.values(), "hunter2", "secretkeybody", "sk-another"):
        assert secret not in sent and secret not in msg["content"]
    assert "SECRET_REDACTED" in msg["content"] and "What do you think?" in msg["content"]
    assert msg["metadata"]["redaction_kinds"] == ["api_key", "password", "private_key", "token"]
    [row] = await env.audit()
    assert row["redaction_applied"] is True
    assert row["redaction_kinds"] == ["api_key", "password", "private_key", "token"]
    [logged] = [r for r in caplog.records if r.getMessage() == "chat.completion"]
    assert logged.path == "direct_inference" and logged.outcome == "success"  # type: ignore[attr-defined]
    for secret in (*SECRETS.values(), "hunter2", "secretkeybody", "What do you think"):  # no secret, no content
        assert secret not in caplog.text


@pytest.mark.model
async def test_transient_backend_failures_are_retried_and_4xx_are_not(make_chat: MakeChat,
                                                                     flaky_proxy: StandIn) -> None:
    env = await make_chat(inference_url=flaky_proxy.url)
    h = await env.user("ann")
    flaky_proxy.fail_next = 2  # "model is loading" twice, then the real model answers
    r = await env.chat(h, model=MODEL, max_tokens=2)
    assert r.status_code == 200, r.text
    assert len(flaky_proxy.bodies) == 3
    flaky_proxy.fail_next, flaky_proxy.status, flaky_proxy.message = 3, 500, "boom"
    assert_openai_error(await env.chat(h, model=MODEL, max_tokens=2), 502, "cynodeai_inference_failed")
    assert len(flaky_proxy.bodies) == 6
    flaky_proxy.fail_next, flaky_proxy.status, flaky_proxy.message = 1, 400, "bad request"
    assert_openai_error(await env.chat(h, model=MODEL, max_tokens=2), 502, "cynodeai_inference_failed")
    assert len(flaky_proxy.bodies) == 7  # not retried
    flaky_proxy.fail_next, flaky_proxy.status = 2, 503
    r = await env.chat(h, model=MODEL, max_tokens=2, stream=True)  # streams retry before the first byte too
    assert r.status_code == 200 and sse_events(r.text)[0][-1] == "[DONE]"
    assert len(flaky_proxy.bodies) == 10


@pytest.mark.model
async def test_a_backend_that_dies_mid_stream_ends_the_stream_with_an_error(make_chat: MakeChat,
                                                                           flaky_proxy: StandIn) -> None:
    env = await make_chat(inference_url=flaky_proxy.url)
    h = await env.user("ann")
    flaky_proxy.cut_after = 3
    r = await env.chat(h, model=MODEL, stream=True, max_tokens=200,
                       messages=[{"role": "user", "content": "Write a long story about a lighthouse."}])
    assert r.status_code == 200
    data, _ = sse_events(r.text)
    assert any("content" in d["choices"][0]["delta"] for d in data[1:-2])  # the answer had begun
    assert data[-2]["error"]["code"] == "cynodeai_inference_failed" and data[-1] == "[DONE]"
    assert len(flaky_proxy.bodies) == 1  # no retry once content was sent
    assert [m["role"] for m in await env.messages()] == ["user"]  # an incomplete answer is not stored
    [row] = await env.audit()
    assert (row["outcome"], row["error_code"]) == ("error", "cynodeai_inference_failed")


@pytest.mark.model
async def test_single_message_clients_get_the_thread_history(make_chat: MakeChat, flaky_proxy: StandIn) -> None:
    env = await make_chat(inference_url=flaky_proxy.url)
    h = await env.user("ann")
    for text in ("My favourite fruit is mango.", "Which fruit do I like?"):
        assert (await env.chat(h, model=MODEL, max_tokens=3, messages=[{"role": "user", "content": text}])
                ).status_code == 200
    second = flaky_proxy.bodies[-1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[0]["content"] == "My favourite fruit is mango." and second[2]["content"] == "Which fruit do I like?"
    several = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A"},
               {"role": "assistant", "content": "B"}, {"role": "developer", "content": "Still brief."},
               {"role": "user", "content": "C"}]
    assert (await env.chat(h, model=MODEL, max_tokens=2, messages=several)).status_code == 200
    assert flaky_proxy.bodies[-1]["messages"] == [  # forwarded as sent, developer as system
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"}, {"role": "system", "content": "Still brief."},
        {"role": "user", "content": "C"}]
    assert flaky_proxy.bodies[-1]["options"] == {"num_predict": 2}
    assert [m["content"] for m in await env.messages() if m["role"] == "user"] == [
        "My favourite fruit is mango.", "Which fruit do I like?", "C"]  # only the last user message is stored


@pytest.mark.model
async def test_the_prepended_history_is_bounded(make_chat: MakeChat, flaky_proxy: StandIn) -> None:
    env = await make_chat(inference_url=flaky_proxy.url, env={"CYNODE_CHAT_HISTORY_MAX_MESSAGES": "3",
                                                               "CYNODE_CHAT_HISTORY_MAX_CHARS": "100"})
    h = await env.user("ann")
    for text in ("one", "two", "three"):
        assert (await env.chat(h, model=MODEL, max_tokens=2, messages=[{"role": "user", "content": text}])
                ).status_code == 200
    sent = flaky_proxy.bodies[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # 3 messages at most, the newest
    assert sent[0]["content"] == "two" and sent[2]["content"] == "three"
    for text in ("x" * 99, "y"):
        assert (await env.chat(h, model=MODEL, max_tokens=2, messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": text}])).status_code == 200
    sent = flaky_proxy.bodies[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."} and sent[-1] == {"role": "user", "content": "y"}
    assert "x" * 99 not in [m["content"] for m in sent]  # with the answer after it, it does not fit into 100
    assert sum(len(m["content"]) for m in sent[1:]) <= 100


@pytest.mark.model
async def test_pma_stream_sends_keepalives_then_one_content_chunk(make_chat: MakeChat, model_server: str) -> None:
    env = await make_chat(inference_url=model_server, pma=pma_service(model_server),
                          env={"CYNODE_CHAT_KEEPALIVE_S": "0.05"})
    h = await env.user("ann")
    r = await env.chat(h, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["openai-version"] == "2020-10-01"
    data, comments = sse_events(r.text)
    assert comments and set(comments) == {": keep-alive"}
    assert data[0]["choices"][0]["delta"] == {"role": "assistant"} and data[0]["object"] == "chat.completion.chunk"
    contents = [d["choices"][0]["delta"]["content"] for d in data[1:-1] if d["choices"]
                and "content" in d["choices"][0]["delta"]]
    assert len(contents) == 1 and contents[0]
    final = [d for d in data[1:-1] if d["choices"] and d["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["choices"][0]["delta"] == {}
    assert data[-2]["choices"] == [] and data[-2]["usage"]["completion_tokens"] > 0 and data[-1] == "[DONE]"


@pytest.mark.model
async def test_a_client_that_leaves_mid_stream_cancels_the_turn(make_chat: MakeChat, model_server: str) -> None:
    env = await make_chat(inference_url=model_server)
    h = await env.user("ann")
    async with env.http.stream("POST", "/v1/chat/completions", headers=h, json={
            "model": MODEL, "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a very long story about the sea."}]}) as r:
        assert r.status_code == 200
        seen = 0
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                seen += 1
            if seen >= 3:
                break
    rows: list[dict[str, Any]] = []
    for _ in range(100):
        rows = await env.audit()
        if rows:
            break
        await asyncio.sleep(0.1)
    assert [(r["outcome"], r["error_code"], r["stream"]) for r in rows] == [
        ("canceled", "cynodeai_request_canceled", True)]
    assert [m["role"] for m in await env.messages()] == ["user"]
    assert env.services.chat is not None and env.services.chat.limits.total == 0

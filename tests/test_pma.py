"""The Project Manager agent: bundles, context composition, and a real chat turn against the built-in model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from cynode.config import PmaSettings, load_settings
from cynode.contracts.pma import PmaChatRequest, PmaError, PmaMessage, PmaProject
from cynode.errors import ConfigError
from cynode.http.server import Listener, bind
from cynode.pma.bundles import DEFAULT_SKILL_ID, load_bundle
from cynode.pma.client import HttpPmaClient
from cynode.pma.context import compose, within_budget
from cynode.pma.role import PmaRole
from cynode.pma.service import PmaService, strip_think


def request(*messages: tuple[str, str], deadline_ms: int = 60_000, **kw) -> PmaChatRequest:
    return PmaChatRequest(version=1, request_id="r1", user_id="u1", project_id="p1", deadline_ms=deadline_ms,
                          messages=[PmaMessage(role=r, content=c) for r, c in messages], **kw)  # type: ignore[arg-type]


def test_packaged_bundles_load_per_role() -> None:
    pm = load_bundle(PmaSettings(), "project_manager")
    pa = load_bundle(PmaSettings(), "project_analyst")
    assert pm.files == ("01_baseline.md", "02_tools.md") and "Project Manager" in pm.baseline
    assert "Project Analyst" in pa.baseline and pa.path != pm.path


def test_bundle_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_bundle(PmaSettings(instructions_project_manager=str(tmp_path / "missing")), "project_manager")
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ConfigError, match=r"no \.md files"):
        load_bundle(PmaSettings(instructions_project_manager=str(tmp_path)), "project_manager")
    with pytest.raises(ConfigError, match="must not load the project_manager bundle"):
        load_bundle(PmaSettings(instructions_project_manager=str(tmp_path),
                                instructions_project_analyst=str(tmp_path)), "project_analyst")
    (tmp_path / "01_big.md").write_text("x" * (257 * 1024))
    with pytest.raises(ConfigError, match="256 KiB"):
        load_bundle(PmaSettings(instructions_project_manager=str(tmp_path)), "project_manager")


def test_context_has_the_spec_headings_in_order() -> None:
    bundle = load_bundle(PmaSettings(), "project_manager")
    req = request(("system", "client rule"), ("user", "hi"), project=PmaProject(id="p1", slug="s", display_name="D"),
                  task_id="t1", additional_context="be brief")
    msgs = compose(bundle, req, 24000)
    system = msgs[0]["content"]
    order = [system.index(h) for h in ("Project Manager", "## How you use tools", "## Project context",
                                       "## Task context", "## User additional context", "## Skills")]
    assert order == sorted(order)
    assert f"### Skill: CyNodeAI interaction ({DEFAULT_SKILL_ID})" in system
    assert msgs[1:] == [{"role": "system", "content": "client rule"}, {"role": "user", "content": "hi"}]


def test_history_budget_keeps_the_newest_and_the_last_user_message() -> None:
    msgs = [PmaMessage(role="user", content="a" * 50), PmaMessage(role="assistant", content="b" * 50),
            PmaMessage(role="user", content="c" * 100)]
    assert [m.content[0] for m in within_budget(msgs, 160)] == ["b", "c"]
    assert [m.content[0] for m in within_budget(msgs, 10)] == ["c"]


def test_think_blocks_are_stripped() -> None:
    assert strip_think("<think>hmm\nok</think> Answer") == "Answer"




@pytest.mark.model
async def test_a_chat_turn_gets_a_real_answer(model_server: str) -> None:
    svc = PmaService(PmaSettings(max_answer_tokens=24), load_bundle(PmaSettings(), "project_manager"),
                     inference_url=lambda: model_server, model=lambda: "gemma3:270m")
    assert (await svc.health()).state == "ready"
    reply = await svc.chat(request(("user", "Say hello.")))
    assert reply.content and reply.model == "gemma3:270m"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


async def test_refusals() -> None:
    bundle = load_bundle(PmaSettings(), "project_manager")
    svc = PmaService(PmaSettings(), bundle, inference_url=lambda: None, model=lambda: None)
    assert (await svc.health()).state == "starting"
    with pytest.raises(PmaError) as e:
        await svc.chat(request(("assistant", "only me")))
    assert e.value.code == "invalid_request" and e.value.status == 400
    with pytest.raises(PmaError) as e:
        await svc.chat(request(("user", "hi")))
    assert e.value.code == "inference_failed"
    pa = PmaService(PmaSettings(), load_bundle(PmaSettings(), "project_analyst"), inference_url=lambda: None,
                    model=lambda: None)
    with pytest.raises(PmaError) as e:
        await pa.chat(request(("user", "hi")))
    assert e.value.status == 404


async def test_unreachable_backend_is_inference_failed() -> None:
    svc = PmaService(PmaSettings(), load_bundle(PmaSettings(), "project_manager"),
                     inference_url=lambda: "http://127.0.0.1:9", model=lambda: "m")
    with pytest.raises(PmaError) as e:
        await svc.chat(request(("user", "hi")))
    assert e.value.code == "inference_failed" and e.value.status == 502


def test_standalone_role_needs_a_role_and_a_service_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pma\.role"):
        PmaRole(load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path)}), colocated_orchestrator=False)
    with pytest.raises(ConfigError, match="service_token"):
        PmaRole(load_settings(None, {"PMA_ROLE": "project_manager"}), colocated_orchestrator=False)
    with pytest.raises(ConfigError, match="does not match"):
        PmaRole(load_settings(None, {"PMA_ROLE": "project_analyst"}), colocated_orchestrator=True)


@pytest.fixture
async def remote_pma(model_server: str) -> AsyncIterator[tuple[str, str]]:
    token = "pma-service-token-0123456789"
    settings = load_settings(None, {"PMA_ROLE": "project_manager", "CYNODE_PMA_SERVICE_TOKEN": token,
                                    "INFERENCE_URL": model_server, "CYNODE_PMA_MAX_ANSWER_TOKENS": "16"})
    role = PmaRole(settings, colocated_orchestrator=False)
    listener = Listener("pma", role.app, bind("127.0.0.1:0"))
    listener.start()
    await listener.started()
    try:
        yield f"http://127.0.0.1:{listener.port}", token
    finally:
        await listener.stop()


@pytest.mark.model
async def test_remote_pma_over_http_with_the_service_token(remote_pma: tuple[str, str]) -> None:
    url, token = remote_pma
    client = HttpPmaClient(url, token)
    try:
        assert (await client.health()).state == "ready"  # discovers the backend's model
        reply = await client.chat(request(("user", "Say hello.")))
        assert reply.content and reply.model == "gemma3:270m"
        bad = HttpPmaClient(url, "wrong-token")
        with pytest.raises(PmaError) as e:
            await bad.chat(request(("user", "hi")))
        assert e.value.code == "unauthorized"
        await bad.close()
        async with httpx.AsyncClient() as h:
            r = await h.post(url + "/internal/chat/completion", content=msgspec.json.encode({"version": 1}),
                             headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    finally:
        await client.close()


async def test_the_http_client_types_answers_it_cannot_use() -> None:
    """A PMA (or something in its place) answering bytes the orchestrator cannot decode: typed errors, never a raw
    decoding exception (which would be a 500 on the chat route)."""
    from aiohttp import web

    answers = {"/readyz": (503, b"not ready \xff"), "/internal/chat/completion": (200, b'{"content": "\xc3"}')}

    async def handler(request: web.Request) -> web.Response:
        status, body = answers[request.path]
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = HttpPmaClient(f"http://127.0.0.1:{runner.addresses[0][1]}", "token")
    try:
        health = await client.health()
        assert health.state == "starting" and "not ready" in (health.detail or "")
        for body in (b'{"content": "\xc3"}', b'{"unexpected": 1}', b"<html>"):
            answers["/internal/chat/completion"] = (200, body)
            with pytest.raises(PmaError) as e:
                await client.chat(request(("user", "hi")))
            assert e.value.code == "inference_failed"
    finally:
        await client.close()
        await runner.cleanup()

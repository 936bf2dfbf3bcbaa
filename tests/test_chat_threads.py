"""Chat threads and messages (agents.md §4): the REST API (owner-only, problem+json, cursor pagination) through the
production gateway app over a real database, and the thread rules a chat turn relies on, called on the service."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from cynode.gateway.chat.threads import ThreadService
from tests.test_gateway_harness import Gateway, gateway_fixture  # noqa: F401

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["type"] == f"urn:cynodeai:error:{code}" and body["instance"] == r.headers["x-request-id"], body
    return dict(body)


def threads(gw: Gateway) -> ThreadService:
    svc = gw.services.threads
    assert svc is not None
    return svc


async def test_create_read_and_list_own_threads_newest_first(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    c = gateway.client
    r = await c.post("/v1/chat/threads", json={"title": "Release plan"}, headers=ann)
    assert r.status_code == 201, r.text
    first = r.json()
    assert set(first) == {"thread_id", "project_id", "title", "created_at", "updated_at"}
    assert first["title"] == "Release plan" and first["created_at"].endswith("Z")
    untitled = (await c.post("/v1/chat/threads", headers=ann)).json()  # an empty body is allowed
    assert untitled["title"] is None and untitled["project_id"] == first["project_id"]
    assert (await c.get(f"/v1/chat/threads/{first['thread_id']}", headers=ann)).json() == first
    listed = (await c.get("/v1/chat/threads", headers=ann)).json()
    assert [t["thread_id"] for t in listed["threads"]] == [untitled["thread_id"], first["thread_id"]]
    assert "next_cursor" not in listed
    by_project = await c.get("/v1/chat/threads", params={"project_id": first["project_id"]}, headers=ann)
    assert len(by_project.json()["threads"]) == 2
    other = await c.get("/v1/chat/threads", params={"project_id": "00000000-0000-4000-8000-000000000000"},
                        headers=ann)
    assert other.json()["threads"] == []


async def test_another_users_thread_is_404_everywhere(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    ben = await gateway.user("ben")
    tid = (await gateway.client.post("/v1/chat/threads", json={}, headers=ann)).json()["thread_id"]
    await gateway.client.post(f"/v1/chat/threads/{tid}/messages", json={"role": "user", "content": "private"},
                              headers=ann)
    c = gateway.client
    for r in (await c.get(f"/v1/chat/threads/{tid}", headers=ben),
              await c.get(f"/v1/chat/threads/{tid}/messages", headers=ben),
              await c.post(f"/v1/chat/threads/{tid}/messages", json={"role": "user", "content": "x"}, headers=ben),
              await c.get(f"/v1/chat/threads/{tid}", headers=await gateway.token()),  # owner-only: admins too
              await c.get("/v1/chat/threads/not-a-uuid", headers=ann),
              await c.get("/v1/chat/threads/00000000-0000-4000-8000-000000000000", headers=ann)):
        problem(r, 404, "not_found")
    assert (await c.get("/v1/chat/threads", headers=ben)).json()["threads"] == []
    assert len(await gateway.rows("SELECT 1 FROM chat_messages")) == 1
    await gateway.flush_audit()
    denied = await gateway.rows("SELECT decision FROM gateway_audit_log WHERE route LIKE '/v1/chat/threads/%%' "
                                "AND status_code = 404 AND resource_id = %s", tid)
    assert [d["decision"] for d in denied] == ["deny"] * 4


async def test_posted_messages_are_stored_redacted_and_listed_oldest_first(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    c = gateway.client
    tid = (await c.post("/v1/chat/threads", json={}, headers=ann)).json()["thread_id"]
    r = await c.post(f"/v1/chat/threads/{tid}/messages", headers=ann, json={
        "role": "user", "content": f"deploy with AKIAABCDEFGHIJKLMNOP and\n{PRIVATE_KEY}\nthanks"})
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["content"] == "deploy with SECRET_REDACTED and\nSECRET_REDACTED\nthanks"
    assert msg["redaction_kinds"] == ["api_key", "private_key"] and msg["role"] == "user"
    assert msg["metadata"]["redaction_kinds"] == ["api_key", "private_key"]
    stored = await gateway.rows("SELECT content FROM chat_messages")
    assert "AKIA" not in stored[0]["content"] and "b3Blbn" not in stored[0]["content"]
    for i in range(4):
        assert (await c.post(f"/v1/chat/threads/{tid}/messages", json={"role": "user", "content": f"m{i}"},
                             headers=ann)).status_code == 201
    page1 = (await c.get(f"/v1/chat/threads/{tid}/messages", params={"limit": 2}, headers=ann)).json()
    page2 = (await c.get(f"/v1/chat/threads/{tid}/messages", params={"limit": 2, "cursor": page1["next_cursor"]},
                         headers=ann)).json()
    page3 = (await c.get(f"/v1/chat/threads/{tid}/messages", params={"limit": 2, "cursor": page2["next_cursor"]},
                         headers=ann)).json()
    contents = [m["content"] for m in page1["messages"] + page2["messages"] + page3["messages"]]
    assert contents[1:] == ["m0", "m1", "m2", "m3"] and "next_cursor" not in page3
    thread = (await c.get(f"/v1/chat/threads/{tid}", headers=ann)).json()
    assert thread["title"] == "deploy with SECRET_REDACTED and\nSECRET_REDACTED\nthanks"[:60]
    assert thread["updated_at"] > thread["created_at"]


async def test_message_and_thread_validation(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    c = gateway.client
    tid = (await c.post("/v1/chat/threads", json={}, headers=ann)).json()["thread_id"]
    url = f"/v1/chat/threads/{tid}/messages"
    for body, field in (({"role": "assistant", "content": "I am the model"}, "role"),
                        ({"role": "system", "content": "rules"}, "role"),
                        ({"role": "user", "content": "   "}, "content"),
                        ({"role": "user", "content": "x" * (1024 * 1024 + 1)}, "content"),
                        ({"role": "user", "content": "a\u0000b"}, "content"),
                        ({"role": "user", "content": "hi", "extra": 1}, "extra"),
                        ({"role": "user"}, "body")):
        p = problem(await c.post(url, json=body, headers=ann), 400, "validation")
        assert field in [e["field"] for e in p.get("errors", [])] or field in p["detail"], p
    problem(await c.post(url, content=b"role=user", headers={**ann, "content-type": "text/plain"}), 415,
            "unsupported_media_type")
    problem(await c.post("/v1/chat/threads", json={"title": "t", "session_id": "x"}, headers=ann), 400, "validation")
    problem(await c.post("/v1/chat/threads", json={"project_id": "nope"}, headers=ann), 400, "validation")
    problem(await c.post("/v1/chat/threads", json={}, headers={**ann, "OpenAI-Project": "nope"}), 400, "validation")
    problem(await c.post("/v1/chat/threads", json={"project_id": "00000000-0000-4000-8000-000000000000"},
                         headers=ann), 404, "not_found")
    problem(await c.get("/v1/chat/threads", params={"limit": 0}, headers=ann), 400, "validation")
    problem(await c.get("/v1/chat/threads", params={"cursor": "!!"}, headers=ann), 400, "validation")
    problem(await c.get("/v1/chat/threads", params={"project_id": "x"}, headers=ann), 400, "validation")
    problem(await c.get("/v1/chat/threads"), 401, "authentication")
    assert [m["content"] for m in (await c.get(url, headers=ann)).json()["messages"]] == []


async def test_thread_pagination_is_stable(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    made = [(await gateway.client.post("/v1/chat/threads", json={"title": f"t{i}"}, headers=ann)).json()["thread_id"]
            for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await gateway.client.get("/v1/chat/threads", params=params, headers=ann)).json()
        seen += [t["thread_id"] for t in page["threads"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == made[::-1]


async def test_a_new_thread_becomes_the_active_one(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    me = (await gateway.client.get("/v1/users/me", headers=ann)).json()
    svc = threads(gateway)
    project = (await gateway.client.post("/v1/chat/threads", json={}, headers=ann)).json()["project_id"]
    turn = await svc.start_turn(me["id"], project, "first", {}, 39)
    assert not turn.created  # the thread made above was active
    made = (await gateway.client.post("/v1/chat/threads", json={"title": "fresh"}, headers=ann)).json()
    turn2 = await svc.start_turn(me["id"], project, "second", {}, 39)
    assert turn2.thread_id == made["thread_id"] and turn2.history == []


async def test_turns_share_the_active_thread_and_never_duplicate_it(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    me = (await gateway.client.get("/v1/users/me", headers=ann)).json()
    svc = threads(gateway)
    project = await svc.resolve_project(_principal(me), None)
    turns = await asyncio.gather(*(svc.start_turn(me["id"], project, f"message {i}", {}, 39) for i in range(8)))
    assert len({t.thread_id for t in turns}) == 1 and sum(t.created for t in turns) == 1
    rows = await gateway.rows("SELECT title FROM chat_threads")
    assert len(rows) == 1 and rows[0]["title"].startswith("message ")
    last = await svc.start_turn(me["id"], project, "x" * 100, {}, 3)
    assert len(last.history) == 3 and [h[0] for h in last.history] == ["user"] * 3
    await svc.finish_turn(last.thread_id, "the answer", {"route": "pma"})
    again = await svc.start_turn(me["id"], project, "next", {}, 39)
    assert again.history[-2:] == [("user", "x" * 100), ("assistant", "the answer")] and len(again.history) == 10


async def test_an_idle_thread_is_rotated(gateway: Gateway) -> None:
    ann = await gateway.user("ann")
    me = (await gateway.client.get("/v1/users/me", headers=ann)).json()
    svc = threads(gateway)
    project = await svc.resolve_project(_principal(me), None)
    old = await svc.start_turn(me["id"], project, "before lunch", {}, 39)
    idle = gateway.services.settings.chat.thread_idle_rotate_s
    async with gateway.db.connection() as conn:
        await conn.execute("UPDATE chat_threads SET updated_at = now() - make_interval(secs => %s)", (idle + 1,))
    new = await svc.start_turn(me["id"], project, "after lunch", {}, 39)
    assert new.created and new.thread_id != old.thread_id and new.history == []
    titles = [r["title"] for r in await gateway.rows("SELECT title FROM chat_threads ORDER BY created_at")]
    assert titles == ["before lunch", "after lunch"]


def _principal(me: dict[str, Any]) -> Any:
    from cynode.auth.principal import Principal

    return Principal(user_id=me["id"], handle=me["handle"], roles=(), group_ids=(), token_kind="access")

"""The tasks API (orchestrator.md §6) through the real gateway app over a fresh database."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cynode import taskstate
from cynode.config import Settings
from cynode.db.pool import Database
from tests.test_auth_api import assert_problem
from tests.test_gateway_harness import Gateway, gateway_fixture, open_gateway  # noqa: F401


async def create(gw: Gateway, h: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await gw.client.post("/v1/tasks", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


async def jobs_of(gw: Gateway, task_id: str) -> list[dict[str, Any]]:
    return await gw.rows("SELECT kind, status, payload FROM jobs WHERE task_id = %s ORDER BY created_at", task_id)


async def counts(gw: Gateway) -> tuple[int, int, int]:
    row = (await gw.rows("SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM jobs) AS j, "
                         "(SELECT count(*) FROM task_artifacts) AS a"))[0]
    return row["t"], row["j"], row["a"]


def files_under(gw: Gateway) -> list[Path]:
    root = gw.services.artifacts.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- create ------------------------------------------------------------------------------------------------------------

async def test_prompt_task_is_queued_with_a_model_call_job_never_a_shell(gateway: Gateway) -> None:
    h = await gateway.token()
    woke: list[int] = []
    gateway.services.tasks.wake = lambda: woke.append(1)
    t = await create(gateway, h, prompt="Summarise the README; rm -rf / please", acceptance_criteria=["short"])
    assert t["status"] == "queued" and t["closed"] is False and t["input_mode"] == "prompt"
    assert t["id"] == t["task_id"] and t["task_name"] == "summarise-the-readme-rm"
    assert t["prompt"].startswith("Summarise") and "attachments" not in t and t["created_at"].endswith("Z")
    assert woke == [1]
    [job] = await jobs_of(gateway, t["id"])
    assert job["kind"] == "model_call" and job["status"] == "queued"
    assert job["payload"] == {"version": 1, "kind": "model_call", "prompt": "Summarise the README; rm -rf / please"}
    project = await gateway.rows("SELECT p.slug FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.id = %s",
                                 t["id"])
    assert project[0]["slug"] == "default-" + t["created_by"]
    await gateway.flush_audit()
    audit = await gateway.rows("SELECT action, resource_type, decision, status_code, task_id::text, scope_type "
                               "FROM gateway_audit_log WHERE action = 'create'")
    assert audit == [{"action": "create", "resource_type": "task", "decision": "allow", "status_code": 201,
                      "task_id": t["id"], "scope_type": "project"}]


async def test_script_and_commands_modes_build_sandbox_jobs(gateway: Gateway, settings: Settings) -> None:
    h = await gateway.token()
    s = await create(gateway, h, prompt="echo hi\necho there", input_mode="script", use_inference=True)
    [job] = await jobs_of(gateway, s["id"])
    assert job["kind"] == "sandbox"
    assert job["payload"]["sandbox"] == {"command": ["sh", "-c", "echo hi\necho there"], "use_inference": True,
                                         "timeout_seconds": settings.sandbox.default_timeout_s,
                                         "image": settings.sandbox.default_image}
    c = await create(gateway, h, input_mode="commands", commands=["echo a", "false", "echo b"])
    [job] = await jobs_of(gateway, c["id"])
    assert job["payload"]["sandbox"]["command"] == ["sh", "-c", "set -e\necho a\nfalse\necho b"]
    assert "use_inference" not in job["payload"]["sandbox"] and c["task_name"] == "echo-a"
    one = await create(gateway, h, input_mode="commands", prompt="uname -a")
    [job] = await jobs_of(gateway, one["id"])
    assert job["payload"]["sandbox"]["command"] == ["sh", "-c", "set -e\nuname -a"]


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "input_mode": "python"}, "input_mode"),
    ({"prompt": "   "}, "prompt"),
    ({}, "prompt"),
    ({"prompt": "x", "commands": ["ls"]}, "commands"),
    ({"input_mode": "commands", "commands": []}, "commands"),
    ({"input_mode": "commands", "commands": ["ls", " "]}, "commands"),
    ({"input_mode": "commands", "commands": ["true"] * 65}, "commands"),
    ({"input_mode": "commands", "commands": ["x" * 70_000]}, "commands"),
    ({"prompt": "x" * (256 * 1024 + 1), "input_mode": "script"}, "prompt"),
    ({"prompt": "x" * (1024 * 1024 + 1)}, "prompt"),
    ({"prompt": "x", "task_name": "!!!"}, "task_name"),
    ({"prompt": "x", "task_name": "123E4567-E89B-12D3-A456-426614174000"}, "task_name"),
    ({"prompt": "x", "task_name": "n" * 129}, "task_name"),
    ({"prompt": "x", "project_id": "nope"}, "project_id"),
    ({"prompt": "x", "colour": "red"}, "colour"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "acceptance_criteria": [1]}, "acceptance_criteria[0]"),
    ({"prompt": "nul \x00 byte"}, "prompt"),
    ({"input_mode": "commands", "commands": ["ls", "x\x00"]}, "commands[1]"),
])
async def test_validation_errors_are_400_and_write_nothing(gateway: Gateway, body: dict[str, Any],
                                                           field: str) -> None:
    h = await gateway.token()
    problem = assert_problem(await gateway.client.post("/v1/tasks", json=body, headers=h), 400, "validation")
    assert problem["errors"][0]["field"] == field, problem
    assert await counts(gateway) == (0, 0, 0)


async def test_media_type_size_and_project_errors(gateway: Gateway) -> None:
    h = await gateway.token()
    c = gateway.client
    assert_problem(await c.post("/v1/tasks", content=b"prompt=x", headers={**h, "content-type": "text/plain"}),
                   415, "unsupported_media_type")
    big = json.dumps({"prompt": "x", "acceptance_criteria": ["y" * 1024] * 4200}).encode()
    assert len(big) > 4 * 1024 * 1024
    assert_problem(await c.post("/v1/tasks", content=big, headers={**h, "content-type": "application/json"}),
                   413, "payload_too_large")
    assert_problem(await c.post("/v1/tasks", json={"prompt": "x", "project_id": "00000000-0000-0000-0000-0000000000aa"},
                                headers=h), 404, "not_found")
    assert await counts(gateway) == (0, 0, 0)


async def test_project_access(gateway: Gateway) -> None:
    admin = await gateway.token()
    uh = await gateway.user("pat", "pat-password", admin_headers=admin)
    pat_id = (await gateway.rows("SELECT id::text FROM users WHERE handle = 'pat'"))[0]["id"]
    async with gateway.db.connection() as conn:
        cur = await conn.execute("INSERT INTO projects (slug, display_name) VALUES ('shared', 'S') RETURNING id::text")
        shared = (await cur.fetchone())["id"]
        cur = await conn.execute("INSERT INTO projects (slug, display_name) VALUES ('secret', 'X') RETURNING id::text")
        secret = (await cur.fetchone())["id"]
        await conn.execute("INSERT INTO role_bindings (subject_type, subject_id, role_id, scope_type, scope_id) "
                           "SELECT 'user', %s, id, 'project', %s FROM roles WHERE name = 'member'", (pat_id, shared))
    assert (await create(gateway, uh, prompt="a", project_id=shared))["project_id"] == shared
    assert_problem(await gateway.client.post("/v1/tasks", json={"prompt": "a", "project_id": secret}, headers=uh),
                   404, "not_found")
    assert (await create(gateway, admin, prompt="a", project_id=secret))["project_id"] == secret


async def test_names_are_normalized_and_unique_per_creator(gateway: Gateway) -> None:
    admin = await gateway.token()
    other = await gateway.user("olga", "olga-password", admin_headers=admin)
    names = [(await create(gateway, admin, prompt="Fix the  Build, now! please")) ["task_name"] for _ in range(3)]
    assert names == ["fix-the-build-now", "fix-the-build-now-2", "fix-the-build-now-3"]
    assert (await create(gateway, other, prompt="fix the build now"))["task_name"] == "fix-the-build-now"
    assert (await create(gateway, admin, prompt="x", task_name="  My Task__Name  "))["task_name"] == "my-task-name"
    assert (await create(gateway, admin, prompt="x", task_name="my task name"))["task_name"] == "my-task-name-2"
    assert (await create(gateway, admin, prompt="!!! ???"))["task_name"] == "task"
    long = await create(gateway, admin, prompt="a" * 100)
    assert long["task_name"] == "a" * 40
    results = await asyncio.gather(*(create(gateway, admin, prompt="race me") for _ in range(6)))
    assert sorted(r["task_name"] for r in results) == sorted(["race-me"] + [f"race-me-{i}" for i in range(2, 7)])


# -- reads -------------------------------------------------------------------------------------------------------------

async def test_get_by_id_or_own_name_and_others_get_404(gateway: Gateway) -> None:
    admin = await gateway.token()
    uh = await gateway.user("quinn", "quinn-password", admin_headers=admin)
    mine = await create(gateway, uh, prompt="my own task")
    c = gateway.client
    by_id = (await c.get(f"/v1/tasks/{mine['id']}", headers=uh)).json()
    by_name = (await c.get("/v1/tasks/my-own-task", headers=uh)).json()
    assert by_id == by_name and by_id["prompt"] == "my own task"
    other = await gateway.user("rita", "rita-password", admin_headers=admin)
    for path in ("", "/result", "/logs", "/artifacts"):
        assert_problem(await c.get(f"/v1/tasks/{mine['id']}{path}", headers=other), 404, "not_found")
    assert_problem(await c.post(f"/v1/tasks/{mine['id']}/cancel", headers=other), 404, "not_found")
    assert_problem(await c.get("/v1/tasks/my-own-task", headers=other), 404, "not_found")
    assert_problem(await c.get("/v1/tasks/00000000-0000-0000-0000-000000000000", headers=other), 404, "not_found")
    assert (await c.get(f"/v1/tasks/{mine['id']}", headers=admin)).status_code == 200  # admins see all
    assert_problem(await c.get("/v1/tasks/my-own-task", headers=admin), 404, "not_found")  # names: own only
    await gateway.flush_audit()
    rows = await gateway.rows("SELECT action, decision, status_code FROM gateway_audit_log WHERE task_id = %s "
                              "ORDER BY created_at", mine["id"])
    denied = [r for r in rows if r["decision"] == "deny"]
    assert len(denied) == 5 and all(r["status_code"] == 404 for r in denied)
    assert {"action": "read", "decision": "allow", "status_code": 200} in rows


async def test_list_pages_newest_first_with_status_filter(gateway: Gateway) -> None:
    h = await gateway.token()
    ids = [(await create(gateway, h, prompt=f"task number {i}"))["id"] for i in range(5)]
    other = await gateway.user("sam", "sam-password")
    await create(gateway, other, prompt="not yours")
    c = gateway.client
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = (await c.get("/v1/tasks", params=params, headers=h)).json()
        seen += [t["id"] for t in body["tasks"]]
        assert all("prompt" not in t for t in body["tasks"])
        pages += 1
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3
    async with gateway.db.transaction() as conn:
        await taskstate.cancel_task(conn, ids[1])
    body = (await c.get("/v1/tasks", params={"status": "canceled"}, headers=h)).json()
    assert [t["id"] for t in body["tasks"]] == [ids[1]] and "next_cursor" not in body
    for params in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"limit": "²"}, {"limit": "-1"},
                   {"cursor": "!!"}, {"cursor": "bm90LWpzb24"},
                   {"status": "pending"}):
        assert_problem(await c.get("/v1/tasks", params=params, headers=h), 400, "validation")


async def complete_job(gw: Gateway, task_id: str, result: dict[str, Any], status: str = "completed") -> None:
    async with gw.db.transaction() as conn:
        cur = await conn.execute("SELECT id::text FROM jobs WHERE task_id = %s", (task_id,))
        job_id = (await cur.fetchone())["id"]
        assert await taskstate.transition_task(conn, task_id, "running")
        assert await taskstate.transition_job(conn, job_id, "running")
        assert await taskstate.transition_job(conn, job_id, status, result=result)
        await taskstate.settle_task_from_jobs(conn, task_id)


async def test_result_and_logs(gateway: Gateway) -> None:
    h = await gateway.token()
    t = await create(gateway, h, input_mode="script", prompt="echo out; echo err >&2")
    c = gateway.client
    r = (await c.get(f"/v1/tasks/{t['id']}/result", headers=h)).json()
    assert r["status"] == "queued" and r["jobs"][0]["status"] == "queued"
    assert "stdout" not in r and "exit_code" not in r and "result" not in r["jobs"][0]
    worker = {"version": 1, "task_id": t["id"], "job_id": "j", "status": "completed", "exit_code": 0,
              "stdout": "out\nline2\n", "stderr": "err\n", "started_at": "s", "ended_at": "e",
              "truncated": {"stdout": False, "stderr": False}}
    await complete_job(gateway, t["id"], worker)
    r = (await c.get(f"/v1/tasks/{t['id']}/result", headers=h)).json()
    assert r["status"] == "completed" and r["stdout"] == "out\nline2\n" and r["stderr"] == "err\n"
    assert r["exit_code"] == 0 and r["jobs"][0]["result"] == worker and r["jobs"][0]["ended_at"].endswith("Z")
    logs = (await c.get(f"/v1/tasks/{t['id']}/logs", headers=h)).json()
    assert logs["stream"] == "all" and logs["lines"] == ["out", "line2", "err"]
    logs = (await c.get(f"/v1/tasks/{t['id']}/logs", params={"stream": "stderr"}, headers=h)).json()
    assert logs["lines"] == ["err"] and logs["stdout"] == "out\nline2\n"
    assert_problem(await c.get(f"/v1/tasks/{t['id']}/logs", params={"stream": "both"}, headers=h), 400, "validation")


async def test_cancel_is_idempotent_and_409_once_finished(gateway: Gateway) -> None:
    h = await gateway.token()
    c = gateway.client
    t = await create(gateway, h, prompt="cancel me")
    for _ in range(2):
        r = await c.post(f"/v1/tasks/{t['id']}/cancel", headers=h)
        assert r.status_code == 200
        assert r.json() == {"task_id": t["id"], "task_name": "cancel-me", "canceled": True, "status": "canceled"}
    assert [j["status"] for j in await jobs_of(gateway, t["id"])] == ["canceled"]
    got = (await c.get(f"/v1/tasks/{t['id']}", headers=h)).json()
    assert got["status"] == "canceled" and got["closed"] is True
    done = await create(gateway, h, prompt="finish me")
    await complete_job(gateway, done["id"], {"version": 1, "status": "completed", "exit_code": 0, "stdout": "",
                                             "stderr": ""})
    assert_problem(await c.post(f"/v1/tasks/{done['id']}/cancel", headers=h), 409, "conflict")


# -- multipart and attachments -----------------------------------------------------------------------------------------

def multipart(task: dict[str, Any], files: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    parts: list[tuple[str, Any]] = [("task", (None, json.dumps(task), "application/json"))]
    parts += [("attachment", (name, data, ctype)) for name, data, ctype in files]
    return {"files": parts}


async def test_multipart_attachments_are_stored_and_served(gateway: Gateway) -> None:
    h = await gateway.token()
    binary = bytes(range(256)) * 10
    r = await gateway.client.post("/v1/tasks", headers=h, **multipart(
        {"prompt": "cat /job/inputs/notes.txt", "input_mode": "script"},
        [("../../etc/notes.txt", b"hello notes\n", "text/plain"), ("blob.bin", binary, "application/x-weird")]))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["attachments"] == ["upload/blob.bin", "upload/notes.txt"]
    listing = (await gateway.client.get(f"/v1/tasks/{t['id']}/artifacts", headers=h)).json()
    arts = {a["name"]: a for a in listing["artifacts"]}
    assert arts["notes.txt"]["checksum_sha256"] == hashlib.sha256(b"hello notes\n").hexdigest()
    assert arts["blob.bin"]["size_bytes"] == len(binary) and arts["blob.bin"]["content_type"] == "application/x-weird"
    [job] = await jobs_of(gateway, t["id"])
    inputs = job["payload"]["sandbox"]["input_files"]
    assert {i["name"]: i["artifact_id"] for i in inputs} == {n: a["artifact_id"] for n, a in arts.items()}
    row = (await gateway.rows("SELECT storage_ref FROM task_artifacts WHERE id = %s",
                              arts["blob.bin"]["artifact_id"]))[0]
    assert gateway.services.artifacts.read(row["storage_ref"]) == binary
    # what the scheduler sends to the sandbox as an input file
    assert await gateway.services.read_artifact(t["id"], arts["blob.bin"]["artifact_id"]) == ("blob.bin", binary)
    with pytest.raises(LookupError):
        await gateway.services.read_artifact(t["id"], "00000000-0000-0000-0000-000000000000")
    assert row["storage_ref"] == f"file:artifacts/{t['id']}/{hashlib.sha256(binary).hexdigest()}"
    r = await gateway.client.get(f"/v1/tasks/{t['id']}/artifacts/{arts['blob.bin']['artifact_id']}", headers=h)
    assert r.status_code == 200 and r.content == binary
    assert r.headers["content-type"].startswith("application/x-weird")
    assert r.headers["content-disposition"].startswith('attachment; filename="blob.bin"')
    assert r.headers["x-content-type-options"] == "nosniff"
    assert_problem(await gateway.client.get(f"/v1/tasks/{t['id']}/artifacts/nope", headers=h), 404, "not_found")


async def test_prompt_mode_inlines_small_text_attachments_only(gateway: Gateway) -> None:
    h = await gateway.token()
    r = await gateway.client.post("/v1/tasks", headers=h, **multipart(
        {"prompt": "Review these"},
        [("a.md", "# Title\nbody ✓".encode(), "text/markdown"), ("img.png", b"\x89PNG\x00\xff", "image/png"),
         ("big.txt", b"y" * (256 * 1024 + 1), "text/plain")]))
    assert r.status_code == 201, r.text
    [job] = await jobs_of(gateway, r.json()["id"])
    prompt = job["payload"]["prompt"]
    assert prompt.startswith("Review these\n\n--- attachment: a.md ---\n# Title\nbody ✓")
    assert prompt.endswith("img.png, big.txt") and "yyyy" not in prompt and "PNG" not in prompt


@pytest.mark.parametrize("case", ["duplicate", "no-task", "bad-json", "unknown-part", "too-many", "too-big"])
async def test_rejected_multipart_writes_nothing_and_leaves_no_file(gateway: Gateway, case: str) -> None:
    h = await gateway.token()
    task = {"prompt": "x"}
    files = [("a.txt", b"a", "text/plain")]
    extra: list[tuple[str, Any]] = []
    status = 400
    if case == "duplicate":
        files = [("a.txt", b"a", "text/plain"), ("dir/a.txt", b"b", "text/plain")]
    elif case == "bad-json":
        task = {"prompt": "x", "nope": 1}
    elif case == "too-many":
        files = [(f"f{i}.txt", b"x" * 100, "text/plain") for i in range(17)]
        status = 413
    elif case == "too-big":
        files = [("ok.txt", b"ok", "text/plain"), ("huge.bin", b"z" * (10 * 1024 * 1024 + 1), "application/x")]
        status = 413
    elif case == "unknown-part":
        extra = [("other", (None, "v", "text/plain"))]
    req = multipart(task, files)
    if case == "no-task":
        req["files"] = req["files"][1:]
    req["files"] += extra
    r = await gateway.client.post("/v1/tasks", headers=h, **req)
    assert_problem(r, status, "validation" if status == 400 else "payload_too_large")
    assert await counts(gateway) == (0, 0, 0)
    assert files_under(gateway) == []


async def test_a_failing_create_transaction_removes_its_files(gateway: Gateway) -> None:
    h = await gateway.token()
    r = await gateway.client.post("/v1/tasks", headers=h, **multipart(
        {"prompt": "x", "project_id": "00000000-0000-0000-0000-0000000000aa"}, [("a.txt", b"data", "text/plain")]))
    assert_problem(r, 404, "not_found")
    assert await counts(gateway) == (0, 0, 0) and files_under(gateway) == []


async def test_multipart_total_limit_is_413(settings: Settings, database: Database,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYNODE_ADMIN_PASSWORD", "admin-password-for-tests")
    small = msgspec.structs.replace(settings, gateway=msgspec.structs.replace(
        settings.gateway, max_task_multipart_bytes=64 * 1024))
    gw = await open_gateway(small, database)
    try:
        h = await gw.token()
        r = await gw.client.post("/v1/tasks", headers=h, **multipart(
            {"prompt": "x"}, [(f"f{i}.bin", b"q" * 30_000, "application/x") for i in range(3)]))
        assert_problem(r, 413, "payload_too_large")
        assert await counts(gw) == (0, 0, 0) and files_under(gw) == []
    finally:
        await gw.client.aclose()
        await gw.services.stop()

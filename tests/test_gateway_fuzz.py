"""Fuzzing the gateway's bodies (task create as JSON and multipart, login, refresh, logout, tokens, users) and the ids
in its paths: never a 5xx, every error is problem+json carrying the request id, and a rejected task create writes
nothing."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_gateway_harness import Gateway, gateway_fixture  # noqa: F401

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

awkward = st.sampled_from(["\x00", "a\x00b", "\ud800", "é✓", "\u202e", "0" * 300, "default-x", "system"])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                         st.text(max_size=40), awkward)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
modes = st.sampled_from(["prompt", "script", "commands", "", "PROMPT", "shell"]) | st.text(max_size=6)
uuids = st.uuids().map(str) | st.text(max_size=40)

task_bodies = st.fixed_dictionaries({}, optional={
    "prompt": st.text(max_size=200) | awkward | json_values,
    "input_mode": modes | json_values,
    "commands": st.lists(st.text(max_size=30), max_size=70) | json_values,
    "task_name": st.text(max_size=140) | awkward | json_values,
    "project_id": uuids | json_values,
    "use_inference": st.booleans() | json_values,
    "acceptance_criteria": st.lists(st.text(max_size=20), max_size=3) | json_values,
}) | st.dictionaries(st.text(max_size=12), json_values, max_size=5) | json_values

login_bodies = st.fixed_dictionaries({}, optional={
    "handle": st.sampled_from(["admin", "nobody", "system"]) | st.text(max_size=300) | json_values,
    "password": st.text(max_size=300) | json_values,
}) | st.dictionaries(st.text(max_size=12), json_values, max_size=4) | json_values

# json.dumps escapes everything to ASCII, so the bodies above never carry bytes that are not UTF-8. `encode` turns a
# body into its wire form and, when the example asks, splices such bytes in just after a quote (so most of them land
# inside a JSON string): a lone continuation byte, a cut-short sequence, an encoded surrogate, 0xff, a code point past
# U+10FFFF, an overlong "/".
BAD_UTF8 = [b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xff", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
splices = st.none() | st.tuples(st.sampled_from(BAD_UTF8), st.integers(0, 1000))


def encode(body: Any, splice: tuple[bytes, int] | None) -> bytes:
    raw = json.dumps(body).encode()
    if splice is None:
        return raw
    bad, at = splice
    quotes = [i for i, b in enumerate(raw) if b == ord('"')]
    cut = quotes[at % len(quotes)] + 1 if quotes else at % (len(raw) + 1)
    return raw[:cut] + bad + raw[cut:]


filenames = st.one_of(st.text(max_size=30), st.sampled_from(["../../x", "a/b/c.txt", "..", ".", "\x00", "é.txt",
                                                              "x" * 300, "a\r\nb"]))


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        body = r.json()
        assert body["instance"] == r.headers["x-request-id"] and body["status"] == r.status_code
        assert body["type"].startswith("urn:cynodeai:error:")


async def task_count(gw: Gateway) -> int:
    return int((await gw.rows("SELECT count(*) AS n FROM tasks"))[0]["n"])


def _quiet(gw: Gateway) -> None:
    gw.services.auth.login_limiter.per_min = 0
    gw.services.user_limiter.per_min = 0


@FUZZ
@given(body=task_bodies, splice=splices)
@example(body={"prompt": "hello"}, splice=(b"\xff", 0))  # not UTF-8 inside a string: 400, not 500
async def test_fuzz_task_create_json(gateway: Gateway, body: Any, splice: tuple[bytes, int] | None) -> None:
    _quiet(gateway)
    h = await gateway.token() if not hasattr(gateway, "_h") else gateway._h  # type: ignore[attr-defined]
    gateway._h = h  # type: ignore[attr-defined]
    before = await task_count(gateway)
    r = await gateway.client.post("/v1/tasks", content=encode(body, splice),
                                  headers={**h, "content-type": "application/json"})
    check(r)
    assert await task_count(gateway) == before + (1 if r.status_code == 201 else 0)


@FUZZ
@given(raw=st.binary(max_size=200), ctype=st.sampled_from(["application/json", "multipart/form-data",
                                                          "multipart/form-data; boundary=xyz", "text/plain", ""]))
async def test_fuzz_task_create_raw_bytes(gateway: Gateway, raw: bytes, ctype: str) -> None:
    _quiet(gateway)
    h = await gateway.token() if not hasattr(gateway, "_h") else gateway._h  # type: ignore[attr-defined]
    gateway._h = h  # type: ignore[attr-defined]
    before = await task_count(gateway)
    r = await gateway.client.post("/v1/tasks", content=raw, headers={**h, "content-type": ctype})
    check(r)
    assert await task_count(gateway) == before + (1 if r.status_code == 201 else 0)


@FUZZ
@given(task=task_bodies | st.text(max_size=50),
       files=st.lists(st.tuples(filenames, st.binary(max_size=300), st.text(max_size=20)), max_size=4),
       extra=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=2), splice=splices)
async def test_fuzz_task_create_multipart(gateway: Gateway, task: Any, files: list[tuple[str, bytes, str]],
                                          extra: list[tuple[str, str]], splice: tuple[bytes, int] | None) -> None:
    _quiet(gateway)
    h = await gateway.token() if not hasattr(gateway, "_h") else gateway._h  # type: ignore[attr-defined]
    gateway._h = h  # type: ignore[attr-defined]
    before = await task_count(gateway)
    text = task.encode() if isinstance(task, str) else encode(task, splice)
    parts: list[tuple[str, Any]] = [("task", (None, text, "application/json"))]
    parts += [("attachment", (name, data, ctype or "application/octet-stream")) for name, data, ctype in files]
    parts += [(k, (None, v)) for k, v in extra]
    try:
        r = await gateway.client.post("/v1/tasks", files=parts, headers=h)
    except (UnicodeEncodeError, ValueError):  # httpx itself cannot encode that header value: not our concern
        return
    check(r)
    created = 1 if r.status_code == 201 else 0
    assert await task_count(gateway) == before + created
    if not created:
        root = gateway.services.artifacts.root
        rows = await gateway.rows("SELECT DISTINCT task_id::text FROM task_artifacts")
        on_disk = {p.name for p in root.iterdir()} if root.exists() else set()
        assert on_disk <= {r["task_id"] for r in rows}  # no files left behind by a rejection


@FUZZ
@given(body=login_bodies, path=st.sampled_from(["/v1/auth/login", "/v1/auth/refresh"]), splice=splices)
@example(body={"handle": "admin", "password": "x"}, path="/v1/auth/login", splice=(b"\xc3", 2))
async def test_fuzz_login_and_refresh(gateway: Gateway, body: Any, path: str, splice: tuple[bytes, int] | None) -> None:
    _quiet(gateway)
    gateway.services.auth.lockout.failures = 0
    if path.endswith("refresh") and isinstance(body, dict) and "handle" in body:
        body = {"refresh_token": body["handle"]}
    r = await gateway.client.post(path, content=encode(body, splice), headers={"content-type": "application/json"})
    check(r)
    assert r.status_code in (200, 400, 401, 413, 429)


@FUZZ
@given(body=json_values | st.dictionaries(st.sampled_from(["refresh_token", "name", "expires_in_days", "handle",
                                                           "password", "email", "roles", "value"]), json_values),
       path=st.sampled_from(["/v1/auth/logout", "/v1/auth/tokens", "/v1/users", "/v1/users/{me}/reset_password"]),
       auth=st.sampled_from(["good", "none", "junk"]), splice=splices)
async def test_fuzz_authenticated_bodies(gateway: Gateway, body: Any, path: str, auth: str,
                                         splice: tuple[bytes, int] | None) -> None:
    _quiet(gateway)
    if not hasattr(gateway, "_pat"):
        h = await gateway.token()
        r = await gateway.client.post("/v1/auth/tokens", json={"name": "fuzz"}, headers=h)
        gateway._pat = r.json()["token"]  # type: ignore[attr-defined]
        gateway._me = (await gateway.client.get("/v1/users/me", headers=h)).json()["id"]  # type: ignore[attr-defined]
    headers = {"content-type": "application/json"}
    if auth == "good":
        headers["Authorization"] = "Bearer " + gateway._pat  # type: ignore[attr-defined]
    elif auth == "junk":
        headers["Authorization"] = "Bearer eyJhbGciOiJub25lIn0.e30."
    if path.endswith("reset_password") and isinstance(body, dict):
        body.pop("password", None)  # never change the admin's password mid-run
    r = await gateway.client.post(path.replace("{me}", gateway._me), content=encode(body, splice),  # type: ignore[attr-defined]
                                  headers=headers)
    check(r)
    if auth != "good":
        assert r.status_code == 401


ID_ROUTES = [("GET", "/v1/tasks/{}"), ("GET", "/v1/tasks/{}/result"), ("GET", "/v1/tasks/{}/logs"),
             ("POST", "/v1/tasks/{}/cancel"), ("GET", "/v1/tasks/{}/artifacts"), ("GET", "/v1/tasks/{}/artifacts/{}"),
             ("GET", "/v1/chat/threads/{}"), ("GET", "/v1/chat/threads/{}/messages"), ("DELETE", "/v1/auth/tokens/{}"),
             ("POST", "/v1/users/{}/disable"), ("POST", "/v1/users/{}/enable"),
             ("POST", "/v1/users/{}/revoke_sessions"), ("GET", "/v1/settings/{}"), ("DELETE", "/v1/settings/{}")]


@FUZZ
@given(route=st.sampled_from(ID_ROUTES), ids=st.lists(st.text(max_size=80) | awkward | uuids, min_size=2, max_size=2))
async def test_fuzz_ids_in_paths(gateway: Gateway, route: tuple[str, str], ids: list[str]) -> None:
    """Ids in the path are the caller's text: never a 5xx, and nothing in them can stall the audit trail."""
    _quiet(gateway)
    h = await gateway.token() if not hasattr(gateway, "_h") else gateway._h  # type: ignore[attr-defined]
    gateway._h = h  # type: ignore[attr-defined]
    method, template = route
    path = template.format(*(quote(i, safe="", errors="surrogatepass") for i in ids))
    r = await gateway.client.request(method, path, headers=h, json={} if method == "POST" else None)
    check(r)
    assert await gateway.services.audit.flush()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# A cursor is the caller's text too: random text, base64 of random JSON (it gets past base64 and reaches the decoder)
# and lists shaped like the real sort keys (timestamp, id) with awkward members.
stamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=30) | awkward
cursors = st.one_of(st.text(max_size=60), awkward,
                    st.tuples(json_values, splices).map(lambda t: _b64(encode(*t))),
                    st.lists(stamps | uuids | json_values, max_size=3).map(lambda v: _b64(json.dumps(v).encode())))
param_values = st.one_of(st.text(max_size=40), awkward, st.integers(-(2**70), 2**70).map(str), cursors)
QUERY_ROUTES = [("GET", "/v1/tasks", ["limit", "cursor", "status"]),
                ("GET", "/v1/tasks/{task}/logs", ["stream"]),
                ("GET", "/v1/chat/threads", ["limit", "cursor", "project_id"]),
                ("GET", "/v1/chat/threads/{thread}/messages", ["limit", "cursor"]),
                ("GET", "/v1/settings", ["prefix", "limit", "cursor"]),
                ("DELETE", "/v1/settings/fuzz.missing", ["expected_version"]),
                ("POST", "/v1/chat/warm", ["model"])]


@FUZZ
@given(route=st.sampled_from(QUERY_ROUTES), data=st.data())
async def test_fuzz_query_parameters(gateway: Gateway, route: tuple[str, str, list[str]], data: Any) -> None:
    """Query parameters (limits, cursors, filters) are the caller's text: a 400 naming them, never a 5xx, and the
    audit trail still flushes."""
    _quiet(gateway)
    if not hasattr(gateway, "_q"):
        h = await gateway.token()
        task = (await gateway.client.post("/v1/tasks", json={"prompt": "fuzz"}, headers=h)).json()["id"]
        thread = (await gateway.client.post("/v1/chat/threads", json={}, headers=h)).json()["thread_id"]
        gateway._q = (h, {"task": task, "thread": thread})  # type: ignore[attr-defined]
    h, ids = gateway._q  # type: ignore[attr-defined]
    method, template, names = route
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(names), param_values), min_size=1, max_size=3))
    query = "&".join(f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in pairs)
    r = await gateway.client.request(method, template.format(**ids) + "?" + query, headers=h,
                                     json={} if method == "POST" else None)
    if template == "/v1/chat/warm":  # an OpenAI-compatible route: OpenAI-shaped errors
        assert r.status_code < 500 and (r.status_code < 400 or r.json()["error"]["message"]), r.text
        return
    check(r)
    if r.status_code == 400:
        assert any(e["field"] in names for e in r.json().get("errors") or [{"field": names[0]}]), r.text
    assert await gateway.services.audit.flush()

"""Login, refresh rotation and reuse detection, logout, bearer checks, lockout, rate limits, personal API tokens.

Through the real gateway app (ASGI) over a fresh PostgreSQL database; assertions are about what a client sees and
what is recorded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from cynode.auth.tokens import encode_jwt
from tests.test_gateway_harness import ADMIN_PASSWORD, JWT_SECRET, Gateway, gateway_fixture  # noqa: F401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"urn:cynodeai:error:{code}" and body["instance"] == r.headers["x-request-id"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    return body


async def audit_events(gw: Gateway) -> list[tuple[str, bool, str | None]]:
    rows = await gw.rows("SELECT event_type, success, reason FROM auth_audit_log WHERE request_id <> 'startup' "
                         "ORDER BY created_at, id")
    return [(r["event_type"], r["success"], r["reason"]) for r in rows]


async def test_login_returns_a_token_pair_that_works(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/auth/login", json={"handle": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "refresh_expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900 and body["refresh_expires_in"] == 604800
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"], issuer="cynodeai")
    assert claims["token_type"] == "access" and claims["handle"] == "admin" and claims["sid"]
    me = await gateway.client.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["handle"] == "admin" and me.json()["roles"] == ["admin"] and me.json()["is_active"] is True
    stored = await gateway.rows("SELECT refresh_token_hash FROM refresh_sessions")
    assert len(stored) == 1 and body["refresh_token"].encode() not in bytes(stored[0]["refresh_token_hash"])
    assert await audit_events(gateway) == [("login_success", True, None)]


async def test_bad_credentials_are_one_indistinguishable_401(gateway: Gateway) -> None:
    await gateway.user("bob", "bob-password-1")
    await gateway.client.post("/v1/users/" + (await gateway.rows("SELECT id::text FROM users WHERE handle='bob'"))[0]
                              ["id"] + "/disable", headers=await gateway.token())
    cases = [("admin", "wrong-password"), ("nobody", "whatever-pw"), ("bob", "bob-password-1"),
             ("system", "anything-at-all")]
    details = set()
    for handle, pw in cases:
        r = await gateway.client.post("/v1/auth/login", json={"handle": handle, "password": pw})
        details.add(assert_problem(r, 401, "authentication")["detail"])
    assert details == {"Invalid credentials"}
    failures = [e for e in await audit_events(gateway) if e[0] == "login_failure"]
    assert [f[2] for f in failures] == ["invalid_password", "unknown_user", "user_inactive", "invalid_password"]
    unknown = await gateway.rows("SELECT subject_handle FROM auth_audit_log WHERE reason = 'unknown_user'")
    assert unknown[0]["subject_handle"].startswith("sha256:") and "nobody" not in unknown[0]["subject_handle"]


async def test_login_body_errors_are_400_and_media_type_415(gateway: Gateway) -> None:
    c = gateway.client
    assert_problem(await c.post("/v1/auth/login", json={"handle": "admin"}), 400, "validation")
    assert_problem(await c.post("/v1/auth/login", json={"handle": "a", "password": "b", "otp": 1}), 400, "validation")
    assert_problem(await c.post("/v1/auth/login", content=b"handle=a", headers={"content-type": "text/plain"}),
                   415, "unsupported_media_type")
    assert_problem(await c.post("/v1/auth/login", json={"handle": "a", "password": "p" * 20_000}), 413,
                   "payload_too_large")


async def test_eleventh_failed_login_is_429_even_with_the_right_password(gateway: Gateway) -> None:
    await gateway.user("carol", "carol-password")
    for _ in range(10):
        r = await gateway.client.post("/v1/auth/login", json={"handle": "carol", "password": "nope-nope"})
        assert r.status_code == 401
    r = await gateway.client.post("/v1/auth/login", json={"handle": "carol", "password": "carol-password"})
    assert_problem(r, 429, "rate_limit")
    assert int(r.headers["retry-after"]) > 0
    # unknown handles lock the same way, so a lockout reveals nothing
    for _ in range(10):
        await gateway.client.post("/v1/auth/login", json={"handle": "ghost", "password": "nope-nope"})
    assert (await gateway.client.post("/v1/auth/login", json={"handle": "ghost", "password": "x" * 9})) \
        .status_code == 429
    await gateway.login()  # other handles are unaffected
    assert ("login_failure", False, "locked_out") in await audit_events(gateway)


async def test_login_rate_limit_per_ip(gateway: Gateway) -> None:
    gateway.services.auth.login_limiter.per_min = 3
    gateway.services.auth.login_limiter.rate = 3 / 60
    for _ in range(3):
        await gateway.client.post("/v1/auth/login", json={"handle": "nobody", "password": "x" * 8})
    r = await gateway.client.post("/v1/auth/login", json={"handle": "admin", "password": ADMIN_PASSWORD})
    assert_problem(r, 429, "rate_limit")
    assert int(r.headers["retry-after"]) >= 1
    assert ("login_failure", False, "rate_limited") in await audit_events(gateway)


async def test_refresh_rotates_and_reuse_revokes_every_session(gateway: Gateway) -> None:
    first = await gateway.login()
    other = await gateway.login()  # a second session of the same user
    r = await gateway.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # the rotated session's access token stops working; the new one works
    assert (await gateway.client.get("/v1/users/me", headers=bearer(first["access_token"]))).status_code == 401
    assert (await gateway.client.get("/v1/users/me", headers=bearer(second["access_token"]))).status_code == 200
    # reusing the old refresh token: 401, and every session of the user ends
    r = await gateway.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(r, 401, "authentication")
    for tokens in (second, other):
        assert (await gateway.client.get("/v1/users/me", headers=bearer(tokens["access_token"]))).status_code == 401
    r = await gateway.client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    assert ("refresh_failure", False, "reuse_detected") in await audit_events(gateway)
    families = await gateway.rows("SELECT DISTINCT family_id FROM refresh_sessions")
    assert len(families) == 2


async def test_refresh_with_garbage_or_disabled_user_is_401(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/auth/refresh", json={"refresh_token": "cyn_rt_not-a-real-token"})
    assert_problem(r, 401, "authentication")
    await gateway.user("dave", "dave-password")
    tokens = await gateway.login("dave", "dave-password")
    uid = (await gateway.rows("SELECT id::text FROM users WHERE handle='dave'"))[0]["id"]
    async with gateway.db.connection() as conn:  # disabled behind the API's back: refresh still refuses
        await conn.execute("UPDATE users SET is_active = false WHERE id = %s", (uid,))
    r = await gateway.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_logout_kills_the_access_token_at_once(gateway: Gateway) -> None:
    tokens = await gateway.login()
    h = bearer(tokens["access_token"])
    r = await gateway.client.post("/v1/auth/logout", headers=h)  # empty body allowed
    assert r.status_code == 204 and r.content == b""
    assert_problem(await gateway.client.get("/v1/users/me", headers=h), 401, "authentication")
    assert (await gateway.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})) \
        .status_code == 401
    assert_problem(await gateway.client.post("/v1/auth/logout", headers=h), 401, "authentication")


async def test_logout_also_ends_the_given_refresh_session_of_the_same_user(gateway: Gateway) -> None:
    a = await gateway.login()
    b = await gateway.login()
    r = await gateway.client.post("/v1/auth/logout", json={"refresh_token": b["refresh_token"]},
                                  headers=bearer(a["access_token"]))
    assert r.status_code == 204
    assert (await gateway.client.get("/v1/users/me", headers=bearer(b["access_token"]))).status_code == 401


async def test_missing_malformed_node_and_expired_tokens_are_401(gateway: Gateway) -> None:
    c = gateway.client
    assert_problem(await c.get("/v1/users/me"), 401, "authentication")
    assert_problem(await c.get("/v1/users/me", headers={"Authorization": "Basic YTpi"}), 401, "authentication")
    assert_problem(await c.get("/v1/users/me", headers=bearer("garbage")), 401, "authentication")
    tokens = await gateway.login()
    claims = jwt.decode(tokens["access_token"], JWT_SECRET, algorithms=["HS256"])
    node, _ = encode_jwt({"sub": claims["sub"], "node_slug": "n1", "sid": claims["sid"]}, JWT_SECRET, 60, "node")
    assert_problem(await c.get("/v1/users/me", headers=bearer(node)), 401, "authentication")
    expired = jwt.encode({**claims, "exp": int(time.time()) - 60}, JWT_SECRET, algorithm="HS256")
    assert_problem(await c.get("/v1/users/me", headers=bearer(expired)), 401, "authentication")
    forged = jwt.encode(claims, b"another-secret-of-32-bytes-at-least!", algorithm="HS256")
    assert_problem(await c.get("/v1/users/me", headers=bearer(forged)), 401, "authentication")
    await gateway.flush_audit()
    denials = await gateway.rows("SELECT decision, status_code, user_id FROM gateway_audit_log WHERE status_code=401")
    assert denials and all(d["decision"] == "deny" and d["user_id"] is None for d in denials)


async def test_personal_api_tokens_authenticate_until_revoked(gateway: Gateway) -> None:
    h = await gateway.token()
    r = await gateway.client.post("/v1/auth/tokens", json={"name": "ci", "expires_in_days": 30}, headers=h)
    assert r.status_code == 201
    created = r.json()
    pat = created["token"]
    assert pat.startswith("cyn_pat_") and created["prefix"] == pat[:14] and created["expires_at"]
    stored = await gateway.rows("SELECT token_hash, prefix FROM api_tokens")
    assert pat.encode() not in bytes(stored[0]["token_hash"])
    me = await gateway.client.get("/v1/users/me", headers=bearer(pat))
    assert me.status_code == 200 and me.json()["handle"] == "admin"
    listed = (await gateway.client.get("/v1/auth/tokens", headers=bearer(pat))).json()["tokens"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0] and listed[0]["last_used_at"]
    # another user neither sees nor revokes it
    other = await gateway.user("erin", "erin-password")
    assert (await gateway.client.get("/v1/auth/tokens", headers=other)).json() == {"tokens": []}
    assert_problem(await gateway.client.delete(f"/v1/auth/tokens/{created['id']}", headers=other), 404, "not_found")
    r = await gateway.client.delete(f"/v1/auth/tokens/{created['id']}", headers=h)
    assert r.status_code == 204
    assert_problem(await gateway.client.get("/v1/users/me", headers=bearer(pat)), 401, "authentication")
    assert (await gateway.client.delete(f"/v1/auth/tokens/{created['id']}", headers=h)).status_code == 204
    assert_problem(await gateway.client.post("/v1/auth/tokens", json={"name": ""}, headers=h), 400, "validation")


async def test_api_token_of_a_disabled_user_stops_working(gateway: Gateway) -> None:
    uh = await gateway.user("frank", "frank-password")
    pat = (await gateway.client.post("/v1/auth/tokens", json={"name": "x"}, headers=uh)).json()["token"]
    uid = (await gateway.rows("SELECT id::text FROM users WHERE handle='frank'"))[0]["id"]
    r = await gateway.client.post(f"/v1/users/{uid}/disable", headers=await gateway.token())
    assert r.status_code == 200
    assert (await gateway.client.get("/v1/users/me", headers=bearer(pat))).status_code == 401


async def test_per_user_rate_limit(gateway: Gateway) -> None:
    h = await gateway.token()
    gateway.services.user_limiter.per_min = 5
    gateway.services.user_limiter.rate = 5 / 60
    statuses = [(await gateway.client.get("/v1/users/me", headers=h)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    r = await gateway.client.get("/v1/users/me", headers=h)
    assert_problem(r, 429, "rate_limit")
    assert int(r.headers["retry-after"]) >= 1


async def test_secrets_never_reach_the_logs_or_audit(gateway: Gateway, caplog: Any) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    tokens = await gateway.login()
    await gateway.client.post("/v1/auth/login", json={"handle": "admin", "password": "wrong-password-123"})
    await gateway.client.get("/v1/users/me", headers=bearer(tokens["access_token"]))
    await gateway.flush_audit()
    text = caplog.text
    for secret in (ADMIN_PASSWORD, "wrong-password-123", tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text
    dump = str(await gateway.rows("SELECT * FROM auth_audit_log")) + str(await gateway.rows(
        "SELECT * FROM gateway_audit_log"))
    for secret in (ADMIN_PASSWORD, "wrong-password-123", tokens["access_token"], tokens["refresh_token"]):
        assert secret not in dump


async def test_concurrent_requests_each_get_their_own_principal_and_only_live_sessions_pass(gateway: Gateway) -> None:
    # The gateway answers the session checks of concurrent requests with one query: mixing callers, a logged-out
    # session and a session presented under another user's id must still resolve each request on its own.
    admin = await gateway.token()
    bob = await gateway.user("bob", admin_headers=admin)
    carol = await gateway.user("carol", admin_headers=admin)
    ended = await gateway.login("carol", "user-password-1")
    assert (await gateway.client.post("/v1/auth/logout", headers=bearer(ended["access_token"]))).status_code == 204
    admin_claims = jwt.decode(admin["Authorization"][7:], JWT_SECRET, algorithms=["HS256"])
    bob_claims = jwt.decode(bob["Authorization"][7:], JWT_SECRET, algorithms=["HS256"])
    swapped, _ = encode_jwt({"sub": bob_claims["sub"], "handle": "bob", "sid": admin_claims["sid"]}, JWT_SECRET, 60,
                            "access")
    task = (await gateway.client.post("/v1/tasks", json={"prompt": "bob's"}, headers=bob)).json()["id"]
    cases = [(admin, 200, "admin"), (bob, 200, "bob"), (carol, 200, "carol"),
             (bearer(ended["access_token"]), 401, None), (bearer(swapped), 401, None)] * 4
    responses = await asyncio.gather(*(gateway.client.get("/v1/users/me", headers=h) for h, _, _ in cases))
    assert [(r.status_code, r.json().get("handle")) for r in responses] == [(s, h) for _, s, h in cases]
    reads = await asyncio.gather(*(gateway.client.get(f"/v1/tasks/{task}", headers=h) for h in (admin, bob, carol) * 3))
    assert [r.status_code for r in reads] == [200, 200, 404] * 3

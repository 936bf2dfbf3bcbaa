"""Steps for accounts and tokens: raw HTTP against the gateway as a client would, asserting what a user sees.

Scenarios that end sessions (refresh reuse, logout, lockout) use their own fresh users, never the admin: reusing a
rotated refresh token ends every session of that user, which would break other features sharing the admin.
"""

from __future__ import annotations

import itertools
import time
import uuid

import httpx
from behave import given, then, when

from tests.support.system import ServeProcess

_seq = itertools.count(1)
_admin_tokens: dict[str, str] = {}  # gateway URL -> an admin access token, reused to keep logins rare


def unique_handle(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}-{uuid.uuid4().hex[:6]}"


def login(base: str, handle: str, password: str) -> httpx.Response:
    return httpx.post(base + "/v1/auth/login", json={"handle": handle, "password": password}, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_token(context, base: str | None = None) -> str:
    base = base or context.gateway
    token = _admin_tokens.get(base)
    if token is None or httpx.get(base + "/v1/users/me", headers=bearer(token), timeout=30).status_code != 200:
        r = login(base, "admin", context.admin_password)
        assert r.status_code == 200, r.text
        token = _admin_tokens[base] = r.json()["access_token"]
    return token


def create_user(context, handle: str, password: str = "user-password-123", roles: list[str] | None = None) -> dict:
    body = {"handle": handle, "password": password} | ({"roles": roles} if roles else {})
    r = httpx.post(context.gateway + "/v1/users", json=body, headers=bearer(admin_token(context)), timeout=30)
    assert r.status_code == 201, r.text
    context.users = getattr(context, "users", {})
    context.users[handle] = {"password": password, **r.json()}
    return r.json()


def user_token(context, handle: str) -> str:
    r = login(context.gateway, handle, context.users[handle]["password"])
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# -- login ---------------------------------------------------------------------------------------------------------

@when("I log in to the gateway as the admin")
def log_in_admin(context):
    context.response = login(context.gateway, "admin", context.admin_password)


@when('I log in to the gateway as "{handle}" with the password "{password}"')
def log_in_as(context, handle, password):
    context.response = login(context.gateway, handle, password)


@then("I receive an access token and a refresh token")
def token_pair(context):
    assert context.response.status_code == 200, context.response.text
    body = context.response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900 and body["refresh_expires_in"] == 604800
    context.tokens = body


@then('whoami with that token says "{handle}" with the role "{role}"')
def whoami_says(context, handle, role):
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(context.tokens["access_token"]), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["handle"] == handle and role in r.json()["roles"], r.json()


@then("the answer asks for a bearer token and reveals no reason")
def asks_for_bearer(context):
    r = context.response
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == "urn:cynodeai:error:authentication" and body["instance"] == r.headers["x-request-id"]
    assert body["detail"] == "Invalid credentials"


# -- sessions ------------------------------------------------------------------------------------------------------

@given("a fresh user who is logged in")
def fresh_logged_in_user(context):
    context.handle = unique_handle("sess")
    create_user(context, context.handle)
    r = login(context.gateway, context.handle, context.users[context.handle]["password"])
    assert r.status_code == 200, r.text
    context.tokens = r.json()
    context.first_tokens = r.json()


@when("I refresh my tokens")
def refresh(context):
    context.response = httpx.post(context.gateway + "/v1/auth/refresh",
                                  json={"refresh_token": context.tokens["refresh_token"]}, timeout=30)


@then("I get a new token pair whose access token works")
def new_pair_works(context):
    assert context.response.status_code == 200, context.response.text
    new = context.response.json()
    assert new["refresh_token"] != context.tokens["refresh_token"]
    context.tokens = new
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(new["access_token"]), timeout=30)
    assert r.status_code == 200


@when("I refresh again with the old refresh token")
def refresh_with_old(context):
    context.response = httpx.post(context.gateway + "/v1/auth/refresh",
                                  json={"refresh_token": context.first_tokens["refresh_token"]}, timeout=30)


@then("my current access token no longer works")
def current_token_dead(context):
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(context.tokens["access_token"]), timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


@then("my current refresh token no longer works")
def current_refresh_dead(context):
    r = httpx.post(context.gateway + "/v1/auth/refresh", json={"refresh_token": context.tokens["refresh_token"]},
                   timeout=30)
    assert r.status_code == 401, r.text


@when("I log out")
def log_out(context):
    context.response = httpx.post(context.gateway + "/v1/auth/logout",
                                  headers=bearer(context.tokens["access_token"]), timeout=30)


# -- lockout ---------------------------------------------------------------------------------------------------------

@given("a fresh user")
def fresh_user(context):
    context.handle = unique_handle("user")
    create_user(context, context.handle)


@when("that user fails to log in {n:d} times")
def fail_n_times(context, n):
    context.statuses = [login(context.gateway, context.handle, "definitely-wrong").status_code for _ in range(n)]


@then("every one of those attempts answered {status:d}")
def all_answered(context, status):
    assert context.statuses == [status] * len(context.statuses), context.statuses


@when("that user logs in with the right password")
def right_password(context):
    context.response = login(context.gateway, context.handle, context.users[context.handle]["password"])


@then("the answer says when to retry")
def retry_after(context):
    assert int(context.response.headers["retry-after"]) > 0, context.response.headers


# -- admin-only actions ----------------------------------------------------------------------------------------------

@when("that user tries to create another user")
def member_creates_user(context):
    context.response = httpx.post(context.gateway + "/v1/users",
                                  json={"handle": unique_handle("x"), "password": "password-123"},
                                  headers=bearer(user_token(context, context.handle)), timeout=30)


@when("the admin disables that user")
def admin_disables(context):
    uid = context.users[context.handle]["id"]
    context.user_token_before = user_token(context, context.handle)
    context.response = httpx.post(f"{context.gateway}/v1/users/{uid}/disable", headers=bearer(admin_token(context)),
                                  timeout=30)


@then("that user's access token no longer works")
def user_token_dead(context):
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(context.user_token_before), timeout=30)
    assert r.status_code == 401, r.text


# -- personal API tokens ---------------------------------------------------------------------------------------------

@when('that user creates a personal API token named "{name}"')
def create_pat(context, name):
    context.session_token = user_token(context, context.handle)
    r = httpx.post(context.gateway + "/v1/auth/tokens", json={"name": name},
                   headers=bearer(context.session_token), timeout=30)
    assert r.status_code == 201, r.text
    context.pat = r.json()


@then("the personal API token authenticates as that user")
def pat_works(context):
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(context.pat["token"]), timeout=30)
    assert r.status_code == 200 and r.json()["handle"] == context.handle, r.text


@then("listing tokens never shows its value")
def list_hides(context):
    r = httpx.get(context.gateway + "/v1/auth/tokens", headers=bearer(context.session_token), timeout=30)
    assert r.status_code == 200 and context.pat["token"] not in r.text and context.pat["id"] in r.text


@when("that user revokes the personal API token")
def revoke_pat(context):
    r = httpx.delete(f"{context.gateway}/v1/auth/tokens/{context.pat['id']}", headers=bearer(context.session_token),
                     timeout=30)
    assert r.status_code == 204, r.text


@then("the personal API token is refused")
def pat_refused(context):
    r = httpx.get(context.gateway + "/v1/users/me", headers=bearer(context.pat["token"]), timeout=30)
    assert r.status_code == 401, r.text


# -- expiry (a separate orchestrator with a short access TTL) -----------------------------------------------------

@given("a separate orchestrator whose access tokens last {seconds:d} second")
def short_ttl_orchestrator(context, seconds):
    p = ServeProcess("orchestrator", name="shortttl", env={
        "CYNODE_ACCESS_TTL": f"{seconds}s", "CYNODE_ADMIN_PASSWORD": context.admin_password})
    context.extra_processes.append(p)
    context.tmp_dirs.append(str(p.dir))
    p.start()
    p.wait_accepting(120)
    context.other_gateway = p.url("gateway")


@given("I am logged in there as the admin")
def logged_in_there(context):
    r = login(context.other_gateway, "admin", context.admin_password)
    assert r.status_code == 200 and r.json()["expires_in"] == 1, r.text
    context.tokens = r.json()
    context.logged_in_at = time.monotonic()
    r = httpx.get(context.other_gateway + "/v1/users/me", headers=bearer(context.tokens["access_token"]), timeout=30)
    assert r.status_code == 200, r.text


@when("the token's lifetime and the 30 second clock leeway have passed")
def wait_expiry(context):
    time.sleep(max(0.0, 33 - (time.monotonic() - context.logged_in_at)))


@then("the access token is refused there with 401")
def refused_there(context):
    r = httpx.get(context.other_gateway + "/v1/users/me", headers=bearer(context.tokens["access_token"]), timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    r = httpx.post(context.other_gateway + "/v1/auth/refresh", json={"refresh_token": context.tokens["refresh_token"]},
                   timeout=30)
    assert r.status_code == 200, r.text  # the refresh token still gets a fresh access token

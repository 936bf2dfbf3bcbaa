"""Steps for chat: the `cynode chat` CLI, the official OpenAI client and raw HTTP against the real system, asserting
what a user sees (replies, threads read back through the API, 404s, redacted text)."""

from __future__ import annotations

import asyncio
import time

import httpx
from behave import given, then, when

from features.steps.auth_steps import bearer, create_user, unique_handle, user_token
from tests.support.system import cynode_cli

SECRET_PASSWORD = "hunter2-correct-horse"
SECRET_KEY = "sk-proj" + "Q7" * 14


def _pat(context, access_token: str) -> str:
    r = httpx.post(context.gateway + "/v1/auth/tokens", json={"name": "chat"}, headers=bearer(access_token),
                   timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _threads(context, token: str) -> list[dict]:
    r = httpx.get(context.gateway + "/v1/chat/threads", headers=bearer(token), timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["threads"])


def _messages(context, token: str, thread_id: str) -> httpx.Response:
    return httpx.get(f"{context.gateway}/v1/chat/threads/{thread_id}/messages", headers=bearer(token), timeout=30)


@given("the Project Manager agent is ready")
def pma_ready(context):
    deadline = time.monotonic() + 180
    checks: dict = {}
    while time.monotonic() < deadline:
        checks = {c["name"]: c for c in context.system.readiness()["checks"]}
        if checks.get("pma", {}).get("ok"):
            return
        time.sleep(1)
    raise AssertionError(f"the PMA did not become ready: {checks.get('pma')}")


@given("a chat user with a personal API token")
def chat_user(context):
    handle = unique_handle("chat")
    create_user(context, handle)
    context.chat_token = _pat(context, user_token(context, handle))


@when('the chat user runs cynode chat -m "{message}"')
def run_chat_cli(context, message):
    context.chat_prompt = message
    context.result = cynode_cli("chat", "-m", message, timeout=300, env={
        "CYNODE_GATEWAY_URL": context.gateway, "CYNODE_TOKEN": context.chat_token,
        "XDG_CONFIG_HOME": "/nonexistent-cynode-chat-cfg"})


@then("the CLI prints the reply and exits 0")
def cli_printed_reply(context):
    r = context.result
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip(), r.stdout
    context.chat_reply = r.stdout.rstrip("\n")


@then("the chat user's thread holds the message and the reply")
def thread_holds_turn(context):
    [thread] = _threads(context, context.chat_token)
    r = _messages(context, context.chat_token, thread["thread_id"])
    assert r.status_code == 200, r.text
    msgs = r.json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"], msgs
    assert msgs[0]["content"] == context.chat_prompt and msgs[1]["content"] == context.chat_reply
    assert thread["title"] == context.chat_prompt[:60]


# -- the official OpenAI client --------------------------------------------------------------------------------------

def _openai(context):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=context.gateway + "/v1", api_key=context.chat_token, max_retries=0, timeout=300)


@when("the chat user lists the models with the OpenAI client")
def list_models(context):
    async def go():
        async with _openai(context) as client:
            return [m.id async for m in client.models.list()]

    context.models = asyncio.run(go())


@then('"{model}" comes first in the model list')
def model_first(context, model):
    assert context.models and context.models[0] == model, context.models


@when('the chat user asks "{model}" "{prompt}" with the OpenAI client, streaming')
def ask_streaming(context, model, prompt):
    async def go():
        async with _openai(context) as client:
            stream = await client.chat.completions.create(model=model, stream=True,
                                                          messages=[{"role": "user", "content": prompt}])
            return [c async for c in stream]

    context.chat_prompt = prompt
    context.chunks = asyncio.run(go())


@then("the streamed reply is not empty and ends with a finish reason")
def streamed_reply(context):
    chunks = context.chunks
    assert chunks[0].choices[0].delta.role == "assistant"
    context.chat_reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert context.chat_reply.strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


# -- ownership ---------------------------------------------------------------------------------------------------------

@given('two chat users "{a}" and "{b}"')
def two_chat_users(context, a, b):
    context.chat_tokens = {}
    for alias in (a, b):
        handle = unique_handle(alias)
        create_user(context, handle)
        context.chat_tokens[alias] = user_token(context, handle)


@when('"{who}" starts a chat thread and posts "{text}"')
def start_thread_and_post(context, who, text):
    token = context.chat_tokens[who]
    r = httpx.post(context.gateway + "/v1/chat/threads", json={"title": "plans"}, headers=bearer(token), timeout=30)
    assert r.status_code == 201, r.text
    context.thread_id = r.json()["thread_id"]
    r = httpx.post(f"{context.gateway}/v1/chat/threads/{context.thread_id}/messages",
                   json={"role": "user", "content": text}, headers=bearer(token), timeout=30)
    assert r.status_code == 201, r.text


@then('"{who}" gets 404 for that chat thread and its messages')
def other_gets_404(context, who):
    token = context.chat_tokens[who]
    for r in (httpx.get(f"{context.gateway}/v1/chat/threads/{context.thread_id}", headers=bearer(token), timeout=30),
              _messages(context, token, context.thread_id)):
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert _threads(context, token) == []


@then('"{who}" reads "{text}" back from the thread')
def owner_reads(context, who, text):
    r = _messages(context, context.chat_tokens[who], context.thread_id)
    assert r.status_code == 200 and [m["content"] for m in r.json()["messages"]] == [text], r.text


# -- redaction -------------------------------------------------------------------------------------------------------

@when("the chat user pastes a password and an API key into a chat completion")
def paste_secrets(context):
    headers = bearer(context.chat_token)
    models = httpx.get(context.gateway + "/v1/models", headers=headers, timeout=30).json()["data"]
    direct = [m["id"] for m in models if m["id"] != "cynodeai.pm"]
    body = {"model": direct[0] if direct else "cynodeai.pm", "max_tokens": 4, "messages": [
        {"role": "user", "content": f"Is this safe? password={SECRET_PASSWORD} and my key {SECRET_KEY}"}]}
    r = httpx.post(context.gateway + "/v1/chat/completions", json=body, headers=headers, timeout=300)
    assert r.status_code == 200, r.text


@then("reading the thread back shows SECRET_REDACTED instead of the secrets")
def reads_redacted(context):
    [thread] = _threads(context, context.chat_token)
    msgs = _messages(context, context.chat_token, thread["thread_id"]).json()["messages"]
    user = msgs[0]
    assert user["content"] == "Is this safe? password: SECRET_REDACTED and my key SECRET_REDACTED", user
    for m in msgs:
        assert SECRET_PASSWORD not in m["content"] and SECRET_KEY not in m["content"]
    context.stored_message = user


@then('the stored message lists the redaction kinds "{kinds}"')
def lists_kinds(context, kinds):
    assert context.stored_message["redaction_kinds"] == [k.strip() for k in kinds.split(",")], context.stored_message

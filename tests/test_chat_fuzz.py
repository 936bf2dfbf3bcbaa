"""Fuzzing `/v1/chat/completions` bodies against the real gateway, the real in-process PMA and the real built-in
model: never a 5xx, every error OpenAI-shaped, a refused request stores nothing, a success is a well-formed
completion or a complete SSE stream."""

# ruff: noqa: F811 - the fixtures imported from test_chat_api are (re)named as test parameters

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.test_chat_api import (  # noqa: F401
    MODEL,
    ChatEnv,
    MakeChat,
    make_chat,
    pma_service,
    sse_events,
)
from tests.test_gateway_fuzz import encode, splices

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

awkward = st.sampled_from(["\x00", "a\x00b", "é✓", "\u202e", "0" * 300, "password=hunter2", "sk-" + "a" * 30,
                           "-----BEGIN PRIVATE KEY-----\nabc", ""])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=30), awkward)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
roles = st.sampled_from(["user", "system", "developer", "assistant", "tool", "USER", ""]) | values
parts = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_audio"]) | values},
                                       optional={"text": st.text(max_size=40) | values}), max_size=3)
contents = st.text(max_size=80) | awkward | parts | values
messages = st.lists(st.fixed_dictionaries({"role": roles}, optional={"content": contents, "name": values}),
                    max_size=4) | values
models = st.sampled_from(["cynodeai.pm", "", "  ", MODEL, "nope", "CYNODEAI.PM"]) | st.none() | values
small_ints = st.integers(-3, 4) | values

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60) \
    .filter(str.strip) | awkward.filter(lambda t: t.strip() and "\x00" not in t)
good_messages = st.tuples(
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "assistant", "user", "tool"]),
                                    "content": texts | st.lists(st.fixed_dictionaries(
                                        {"type": st.just("text"), "text": texts}), min_size=1, max_size=2)}),
             max_size=3),
    st.fixed_dictionaries({"role": st.just("user"), "content": texts}),
).map(lambda t: [*t[0], t[1]])

# Plausible requests (most of them are answered by the real PMA or model) and chaotic ones (most are refused).
plausible = st.fixed_dictionaries({"messages": good_messages}, optional={
    "model": st.sampled_from(["cynodeai.pm", "", MODEL, "nope"]) | st.none(),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "n": st.sampled_from([1, None, 2]),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "stop": st.lists(st.text(min_size=1, max_size=4).filter(lambda t: "\x00" not in t), max_size=2),
    "seed": st.integers(0, 2**31),
    "metadata": values,
})
chaotic = st.fixed_dictionaries({"messages": messages}, optional={
    "model": models,
    "stream": st.booleans() | values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | values}) | values,
    "n": small_ints,
    "temperature": st.floats(-1, 3) | values,
    "top_p": st.floats(-1, 2) | values,
    "max_tokens": small_ints,
    "max_completion_tokens": small_ints,
    "stop": st.lists(st.text(max_size=5), max_size=5) | st.text(max_size=5) | values,
    "seed": st.integers(-(2**64), 2**64) | values,
    "tools": values,
    "user": values,
}) | st.dictionaries(st.text(max_size=10), values, max_size=4) | values
bodies = plausible | chaotic


@pytest.fixture
async def fuzz_env(make_chat: MakeChat, model_server: str) -> tuple[ChatEnv, dict[str, str]]:
    env = await make_chat(inference_url=model_server, pma=pma_service(model_server, max_answer_tokens=4))
    env.services.user_limiter.per_min = 0
    return env, await env.user("fuzzer")


def _bounded(body: Any) -> Any:
    """Keep direct-inference answers short (the fuzz is about the gateway, not about long generations)."""
    if isinstance(body, dict) and body.get("model") == MODEL:
        body = {**body, "max_tokens": 2}
        body.pop("max_completion_tokens", None)
    return body


async def _count(env: ChatEnv) -> int:
    return int((await env.rows("SELECT count(*) AS n FROM chat_messages"))[0]["n"])


@pytest.mark.model
@FUZZ
@given(body=bodies, splice=splices)
@example(body={"model": "x", "messages": []}, splice=(b"\xff", 0))  # not UTF-8 inside a string: 400
async def test_fuzz_chat_completions(fuzz_env: tuple[ChatEnv, dict[str, str]], body: Any,
                                     splice: tuple[bytes, int] | None) -> None:
    env, h = fuzz_env
    before = await _count(env)
    r = await env.http.post("/v1/chat/completions", content=encode(_bounded(body), splice),
                            headers={**h, "content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text)
    event(f"status {r.status_code}")
    assert r.headers["openai-version"] == "2020-10-01" and r.headers["x-request-id"]
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["type"] == "cynodeai_error" and err["code"] and err["message"]
        assert await _count(env) == before  # refused before anything was stored
        return
    if r.headers["content-type"].startswith("text/event-stream"):
        data, _ = sse_events(r.text)
        assert data[-1] == "[DONE]" and not any(isinstance(d, dict) and "error" in d for d in data)
    else:
        done = r.json()
        assert done["object"] == "chat.completion" and done["choices"][0]["message"]["content"]
    assert await _count(env) == before + 2  # the user message and the answer


@pytest.mark.model
@FUZZ
@given(raw=st.binary(max_size=200), ctype=st.sampled_from(["application/json", "text/plain", ""]),
       project=st.none() | st.text(max_size=40) | st.uuids().map(str))
async def test_fuzz_raw_bytes_and_project_header(fuzz_env: tuple[ChatEnv, dict[str, str]], raw: bytes, ctype: str,
                                                 project: str | None) -> None:
    env, h = fuzz_env
    headers = {**h, "content-type": ctype}
    if project is not None and project.isprintable() and project.isascii():
        headers["OpenAI-Project"] = project
    r = await env.http.post("/v1/chat/completions", content=raw, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]["type"] == "cynodeai_error"

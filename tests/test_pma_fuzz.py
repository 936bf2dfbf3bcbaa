"""Fuzzing the split PMA's `/internal/chat/completion` (service-token authenticated) with edited request bodies:
never a 500, always the PMA error shape, and nothing but the service token gets in. Its model backend is unreachable
here, so a well-formed request ends as 502 `inference_failed` after the agent's retries."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cynode.config import load_settings
from cynode.pma.role import PmaRole
from tests.test_gateway_fuzz import awkward, encode, json_values, splices

TOKEN = "pma-service-token-0123456789"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
VALID = {"version": 1, "request_id": "r1", "user_id": "u1", "project_id": "p1", "deadline_ms": 2000,
         "messages": [{"role": "user", "content": "hi"}]}
keys = st.sampled_from([*VALID, "thread_id", "additional_context", "project", "task_id", "extra"])
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", ""])
                                           | json_values, "content": st.text(max_size=40) | awkward | json_values}),
                    max_size=3)


@pytest.fixture
async def pma() -> AsyncIterator[httpx.AsyncClient]:
    s = load_settings(None, {"PMA_ROLE": "project_manager", "CYNODE_PMA_SERVICE_TOKEN": TOKEN,
                             "INFERENCE_URL": "http://127.0.0.1:9", "INFERENCE_MODEL": "gemma3:270m"})
    role = PmaRole(s, colocated_orchestrator=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=role.app), base_url="http://pma") as c:
        yield c


@FUZZ
@given(edits=st.lists(st.tuples(keys, st.sampled_from(["set", "drop"]), json_values | messages), max_size=3),
       token=st.sampled_from([TOKEN, TOKEN + "x", ""]), splice=splices)
@example(edits=[], token=TOKEN, splice=(b"\xed\xa0\x80", 0))  # not UTF-8 inside a string: 400, not 500
async def test_fuzz_pma_chat(pma: httpx.AsyncClient, edits: Any, token: str, splice: tuple[bytes, int] | None) -> None:
    body: Any = copy.deepcopy(VALID)
    for key, op, value in edits:
        if op == "drop":
            body.pop(key, None)
        else:
            body[key] = value
    r = await pma.post("/internal/chat/completion", content=encode(body, splice),
                       headers={"Authorization": f"Bearer {token}", "content-type": "application/json"})
    assert r.status_code != 500, r.text
    assert set(r.json()["error"]) >= {"code", "message"}, r.text
    if token != TOKEN:
        assert r.status_code == 401
    assert TOKEN not in r.text

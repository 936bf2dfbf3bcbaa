"""Fuzzing the built-in model server's HTTP API, which a sandboxed job (untrusted code) reaches through its
inference proxy: malformed, mistyped and oversized bodies on every endpoint never get a 500, every error is JSON with
an `error` text, and the server keeps answering. Requests name models that do not exist, or the packaged one with
a single token to generate, so the fuzzing does not turn into a generation benchmark."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_gateway_fuzz import awkward, encode, json_values, splices
from tests.test_inference_helpers import MODEL

pytestmark = pytest.mark.model

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
ENDPOINTS = ["/api/generate", "/api/chat", "/api/show", "/api/pull", "/api/embed", "/api/create", "/api/delete",
             "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
models = st.sampled_from(["nope:1b", "", " ", "../../etc/passwd", MODEL.upper()]) | awkward | json_values
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"])
                                           | json_values, "content": st.text(max_size=30) | awkward | json_values}),
                    max_size=3) | json_values
bodies = st.fixed_dictionaries({"model": models}, optional={
    "prompt": st.text(max_size=50) | awkward | json_values, "messages": messages, "stream": st.booleans()
    | json_values, "options": json_values | st.dictionaries(st.sampled_from(
        ["num_predict", "temperature", "seed", "stop", "num_ctx", "top_k", "top_p"]), json_values, max_size=3),
    "format": json_values, "keep_alive": json_values, "input": json_values, "max_tokens": json_values,
    "n": json_values, "name": models}) | json_values
# The packaged model with one token to generate: well-formed requests do reach the model.
real = st.fixed_dictionaries({"model": st.just(MODEL), "prompt": st.text(max_size=40) | awkward,
                              "messages": messages, "stream": st.booleans()}).map(
    lambda b: {**b, "options": {"num_predict": 1}, "max_tokens": 1})


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=bodies | real, raw=st.booleans(), splice=splices)
@example(path="/api/show", body={"model": "x"}, raw=False, splice=(b"\xff", 0))  # not UTF-8: 400, not 500
def test_fuzz_model_server_bodies(model_server: str, path: str, body: Any, raw: bool,
                                  splice: tuple[bytes, int] | None) -> None:
    content = encode(body, splice)
    content = content[: max(1, len(content) // 2)] if raw else content
    r = httpx.post(model_server + path, content=content, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code != 500 and r.status_code < 600, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert isinstance(r.json().get("error"), (str, dict)), r.text[:300]
    assert httpx.get(model_server + "/api/version", timeout=10).status_code == 200

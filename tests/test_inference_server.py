"""The built-in model server against the real Gemma 3 270M: Ollama's and OpenAI's official clients, unmodified,
and the wire details those clients (and curl users) rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from tests.test_inference_helpers import MODEL, ServerThread

pytestmark = pytest.mark.model

FAST = {"num_predict": 8, "seed": 7, "temperature": 0.0}


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    s = ServerThread()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def oc(srv: ServerThread) -> ollama.Client:
    return ollama.Client(host=srv.url)


@pytest.fixture(scope="module")
def oai(srv: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="x")


# ------------------------------------------------------------------------------------------------ ollama client


def test_ollama_client_lists_the_packaged_model_with_size_and_digest(oc: ollama.Client) -> None:
    models = oc.list().models
    (m,) = [m for m in models if m.model == MODEL]
    assert m.size and m.size > 200_000_000
    assert m.digest and len(m.digest) == 64
    assert m.details and m.details.family == "gemma3" and m.details.quantization_level == "Q4_K_M"


def test_ollama_client_show(oc: ollama.Client) -> None:
    info = oc.show(MODEL)
    assert info.details and info.details.format == "gguf"
    assert info.modelinfo and info.modelinfo["general.architecture"] == "gemma3"
    assert info.capabilities == ["completion"]


def test_ollama_client_chat_non_streaming(oc: ollama.Client) -> None:
    r = oc.chat(MODEL, messages=[{"role": "user", "content": "Say hello."}], options=FAST, stream=False)
    assert r.message.role == "assistant"
    assert r.message.content
    assert r.done and r.done_reason in ("stop", "length")
    assert 0 < (r.eval_count or 0) <= 8
    assert (r.prompt_eval_count or 0) > 3
    assert (r.total_duration or 0) >= (r.eval_duration or 0) > 0  # nanoseconds, as Ollama reports


def test_ollama_client_chat_streams_token_by_token(oc: ollama.Client) -> None:
    chunks = list(oc.chat(MODEL, messages=[{"role": "user", "content": "Count to ten."}],
                          options={**FAST, "num_predict": 12}, stream=True))
    assert len(chunks) >= 3  # several content chunks, then the final one
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert chunks[-1].eval_count == 12 and chunks[-1].done_reason == "length"
    text = "".join(c.message.content or "" for c in chunks)
    assert text.strip()


def test_ollama_client_generate_both_ways(oc: ollama.Client) -> None:
    whole = oc.generate(MODEL, "The capital of France is", options=FAST, stream=False)
    parts = list(oc.generate(MODEL, "The capital of France is", options=FAST, stream=True))
    assert whole.response and whole.context and len(whole.context) > (whole.prompt_eval_count or 0)
    # temperature 0 and the same seed: streaming and not streaming give the same text
    assert "".join(p.response or "" for p in parts) == whole.response


def test_ollama_client_ps_and_version(oc: ollama.Client, srv: ServerThread) -> None:
    oc.generate(MODEL, "hi", options={"num_predict": 1})
    running = oc.ps().models
    assert [m.model for m in running] == [MODEL]
    assert running[0].context_length == 1024 and running[0].expires_at is not None
    assert httpx.get(f"{srv.url}/api/version").json()["version"]


def test_ollama_client_unknown_model_is_404(oc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        oc.chat("no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404 and e.value.error == "model 'no-such-model' not found"


def test_ollama_client_pull_is_refused_but_a_present_model_is_fine(oc: ollama.Client) -> None:
    assert oc.pull(MODEL).status == "success"  # already here: nothing to download
    with pytest.raises(ollama.ResponseError) as e:
        oc.pull("llama3:8b")
    assert e.value.status_code == 501 and "not supported" in e.value.error
    for call in (lambda: oc.delete(MODEL), lambda: oc.copy(MODEL, "x"), lambda: oc.create("x", from_=MODEL),
                 lambda: oc.push(MODEL), lambda: oc.embed(MODEL, "x")):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 501


# ------------------------------------------------------------------------------------------------ openai client


def test_openai_client_models_list(oai: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in oai.models.list()]
    assert oai.models.retrieve(MODEL).id == MODEL


def test_openai_client_chat_non_streaming(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6,
                                    seed=1)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage and r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_openai_client_chat_streaming_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi"}],
                                         max_tokens=6, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = [c for c in chunks if c.choices]
    assert len(content) >= 2
    assert content[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 6


def test_openai_client_completions_and_unknown_model(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model=MODEL, prompt="One, two,", max_tokens=4, temperature=0)
    assert r.choices[0].text and r.usage and r.usage.completion_tokens <= 4
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.body and e.value.body["message"] == "model 'nope' not found"  # type: ignore[index]


# ------------------------------------------------------------------------------------------------ wire details


def test_generate_streams_ndjson_by_default_and_really_streams(srv: ServerThread) -> None:
    body = {"model": MODEL, "prompt": "Tell me a story.", "options": {"num_predict": 24, "seed": 3}}
    arrivals = []
    with httpx.stream("POST", srv.url + "/api/generate", json=body, timeout=60) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        for line in r.iter_lines():
            arrivals.append((time.perf_counter(), json.loads(line)))
    assert len(arrivals) >= 10
    assert arrivals[-1][1]["done"] is True and arrivals[-1][1]["eval_count"] == 24
    # tokens arrive as they are sampled, not all at the end: at 2 cores a token takes several milliseconds
    assert arrivals[-2][0] - arrivals[0][0] > 0.05


def test_stop_sequence_cuts_the_answer(srv: ServerThread) -> None:
    free = httpx.post(srv.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "List: one, two, three, four, five, six", "raw": True, "stream": False,
        "options": {"num_predict": 16, "temperature": 0, "seed": 1}}).json()["response"]
    assert len(free) > 4
    stop = free[2:4]
    cut = httpx.post(srv.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "List: one, two, three, four, five, six", "raw": True, "stream": False,
        "options": {"num_predict": 16, "temperature": 0, "seed": 1, "stop": [stop]}}).json()
    assert cut["response"] == free[: free.index(stop)]
    assert cut["done_reason"] == "stop"


def test_same_seed_same_text_at_nonzero_temperature(srv: ServerThread) -> None:
    def once(seed: int) -> str:
        return str(httpx.post(srv.url + "/api/generate", timeout=60, json={
            "model": MODEL, "prompt": "Write a word.", "stream": False,
            "options": {"num_predict": 10, "temperature": 1.0, "seed": seed}}).json()["response"])

    assert once(42) == once(42)


def test_format_json_constrains_output(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/chat", timeout=60, json={
        "model": MODEL, "format": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        "messages": [{"role": "user", "content": "Answer in JSON."}], "stream": False,
        "options": {"num_predict": 32, "temperature": 0}}).json()
    assert json.loads(r["message"]["content"])["ok"] in (True, False)


def test_errors_are_ollama_shaped(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/generate", json={"model": "x", "prompt": "hi"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'x' not found"})
    r = httpx.post(srv.url + "/api/generate", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(srv.url + "/api/generate", json={"prompt": "hi"})
    assert r.status_code == 400 and "model" in r.json()["error"]
    r = httpx.post(srv.url + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                "tools": [{"type": "function"}]})
    assert r.status_code == 400 and "tools" in r.json()["error"]
    r = httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": "x", "keep_alive": "soon"})
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": MODEL, "input": "x"})
    assert r.status_code == 501 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(srv.url + "/healthz").text == "ok"
    assert httpx.get(srv.url + "/").text == "Ollama is running"


def test_empty_prompt_loads_and_keep_alive_zero_unloads(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/generate", json={"model": MODEL}, timeout=60).json()
    assert r["done"] and r["done_reason"] == "load"
    assert [m["name"] for m in httpx.get(srv.url + "/api/ps").json()["models"]] == [MODEL]
    r = httpx.post(srv.url + "/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0}).json()
    assert r["done_reason"] == "unload" and r["message"] == {"role": "assistant", "content": ""}
    assert httpx.get(srv.url + "/api/ps").json()["models"] == []
    statuses = srv.call(srv.server.models)
    assert [(s.name, s.status, s.loaded) for s in statuses] == [(MODEL, "available", False)]


def test_a_client_that_leaves_mid_stream_frees_the_model(srv: ServerThread) -> None:
    long = {"model": MODEL, "prompt": "Write a very long essay.", "options": {"num_predict": 3000, "seed": 1}}
    with httpx.stream("POST", srv.url + "/api/generate", json=long, timeout=60) as r:
        lines = r.iter_lines()
        next(lines), next(lines)
    t0 = time.perf_counter()
    r2 = httpx.post(srv.url + "/api/generate", timeout=60,
                    json={"model": MODEL, "prompt": "hi", "stream": False, "options": FAST})
    assert r2.status_code == 200
    assert time.perf_counter() - t0 < 10  # 3000 tokens would take about a minute


def test_a_prompt_longer_than_the_context_is_truncated_not_refused(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/generate", timeout=120, json={
        "model": MODEL, "prompt": "word " * 1500, "stream": False, "options": {"num_predict": 4}}).json()
    assert r["done"] and r["eval_count"] == 4
    assert r["prompt_eval_count"] + 4 <= 1024  # the server runs with n_ctx 1024 here


def test_num_ctx_option_reloads_with_that_context(srv: ServerThread) -> None:
    httpx.post(srv.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 1, "num_ctx": 512}})
    assert [m["context_length"] for m in httpx.get(srv.url + "/api/ps").json()["models"]] == [512]
    httpx.post(srv.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 1}})
    assert [m["context_length"] for m in httpx.get(srv.url + "/api/ps").json()["models"]] == [1024]

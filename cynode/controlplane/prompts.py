"""Prompt-mode jobs (orchestrator.md §7.2): the prompt goes to the model, never to a shell.

Option B: the orchestrator calls the model itself (`[inference] url`, or the colocated node's backend) with
retries. Option A, when B is not available or fails: the job becomes a sandbox job running the fixed model-call
script (`cynode-model-call`) with inference through the job's proxy socket. With neither, the job stays queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cynode.config import Settings
from cynode.contracts.jobs import JobPayload, SandboxPayload
from cynode.inference.client import OllamaClient
from cynode.inference.errors import InferenceError, InferenceHTTPError, ModelLoading
from cynode.utf8 import cut_utf8

log = logging.getLogger("cynode.controlplane.prompts")

MAX_OUTPUT = 262144
ENV_PROMPT_LIMIT = 120 * 1024  # Linux caps one env string at 128 KiB
MODEL_CALL_COMMAND = ["cynode-model-call"]
DEFAULT_MODEL = "qwen3.5:0.8b"
RETRY_DELAYS = (1.0, 2.0)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ModelCallOutcome:
    """Either a finished result, a sandbox payload to run instead (Option A), or neither (stay queued)."""

    def __init__(self, result: dict[str, Any] | None = None, fallback: JobPayload | None = None) -> None:
        self.result = result
        self.fallback = fallback


class PromptExecutor:
    def __init__(self, settings: Settings, *, local_url: Callable[[], str | None] = lambda: None,
                 pm_model: Callable[[], str | None] = lambda: None,
                 inference_node_available: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.local_url = local_url  # the colocated node's backend (serve.py wires it)
        self.pm_model = pm_model
        self.inference_node_available = inference_node_available

    def options(self) -> dict[str, Any] | None:
        n = self.settings.inference.max_answer_tokens
        return {"num_predict": n} if n > 0 else None

    def url(self) -> str | None:
        return self.settings.inference.url or self.local_url()

    def model(self) -> str:
        return self.settings.inference.model or self.pm_model() or DEFAULT_MODEL

    async def __call__(self, ids: dict[str, Any], payload: JobPayload) -> ModelCallOutcome:
        prompt = payload.prompt or ""
        url = self.url()
        if url:
            started = _now()
            try:
                text = await self._generate(url, prompt)
                log.info("prompt answered by direct inference", extra={"job_id": ids["job_id"], "path": "direct"})
                out = cut_utf8(text, MAX_OUTPUT)
                return ModelCallOutcome(result={
                    "version": 1, "task_id": ids["task_id"], "job_id": ids["job_id"], "status": "completed",
                    "exit_code": 0, "stdout": out, "stderr": "", "started_at": started, "ended_at": _now(),
                    "truncated": {"stdout": out != text, "stderr": False}})
            except InferenceError as e:
                log.warning("direct inference failed; falling back to a sandbox job",
                            extra={"job_id": ids["job_id"], "reason": str(e)})
        if not self.inference_node_available():
            return ModelCallOutcome()  # stays queued until a path exists
        log.info("prompt goes to a sandbox model-call job", extra={"job_id": ids["job_id"], "path": "sandbox"})
        return ModelCallOutcome(fallback=self.sandbox_fallback(prompt))

    async def _generate(self, url: str, prompt: str) -> str:
        last: InferenceError | None = None
        for delay in (0.0, *RETRY_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                async with OllamaClient(url, timeout=self.settings.inference.request_timeout_s) as client:
                    reply = await client.generate(self.model(), prompt, self.options(), stream=False)
                text = reply.response or ""
                if not text.strip():
                    raise InferenceError("the model returned an empty answer")
                return text
            except ModelLoading as e:
                last = e
            except InferenceHTTPError as e:
                if not e.retryable and e.status < 500:
                    raise
                last = e
            except InferenceError as e:
                last = e
        assert last is not None
        raise last

    def sandbox_fallback(self, prompt: str) -> JobPayload:
        env = {"CYNODE_MODEL": self.model()}
        if self.settings.inference.max_answer_tokens > 0:
            env["CYNODE_NUM_PREDICT"] = str(self.settings.inference.max_answer_tokens)
        inline: dict[str, str] | None = None
        if len(prompt.encode()) <= ENV_PROMPT_LIMIT:
            env["CYNODE_PROMPT"] = prompt
        else:
            inline = {"prompt.txt": prompt}  # read from /job/inputs/prompt.txt by the script
        return JobPayload(version=1, kind="sandbox", prompt=prompt, sandbox=SandboxPayload(
            command=MODEL_CALL_COMMAND, timeout_seconds=int(self.settings.inference.request_timeout_s) + 60,
            image=self.settings.sandbox.model_call_image, use_inference=True, env=env, inline_files=inline))

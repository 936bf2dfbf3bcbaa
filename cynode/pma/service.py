"""The Project Manager agent service: `PmaService.chat()` composes the context and runs the agent loop.

P1.7 runs a single pass without tools (small models, and no MCP gateway yet); the loop's bounds (deadline,
retries, concurrency, empty-answer retry) are in place for the tool loop of P2.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from cynode.config import PmaSettings
from cynode.contracts.pma import PmaChatRequest, PmaChatResponse, PmaError, PmaHealth, PmaUsage
from cynode.pma.bundles import Bundle
from cynode.pma.context import compose

log = logging.getLogger("cynode.pma")

THINK = re.compile(r"<think>.*?</think>", re.S)
DEFAULT_MODEL = "qwen3.5:0.8b"


def strip_think(text: str) -> str:
    return THINK.sub("", text).strip()


class PmaService:
    def __init__(self, settings: PmaSettings, bundle: Bundle, *, inference_url: Callable[[], str | None],
                 model: Callable[[], str | None]) -> None:
        self.settings = settings
        self.bundle = bundle
        self.inference_url = inference_url  # resolved per request: the backend may come up after the PMA
        self.model = model
        self._slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self._inflight = 0
        log.info("pma.started", extra={"service_id": settings.service_id, "role": bundle.role,
                                       "instructions_path": str(bundle.path), "bundle_files": list(bundle.files),
                                       "bundle_bytes": bundle.size, "default_skill": bundle.default_skill_source,
                                       "mcp": "absent"})

    async def health(self) -> PmaHealth:
        if self.inference_url() is None:
            return PmaHealth(state="starting", role=self.bundle.role, detail="waiting for an inference path")
        return PmaHealth(state="ready", role=self.bundle.role)

    async def chat(self, req: PmaChatRequest) -> PmaChatResponse:
        if self.bundle.role != "project_manager":
            raise PmaError("not_found", "chat completion is served by the project_manager role only")
        if req.version != 1 or not req.messages or len(req.messages) > 1000 \
                or not any(m.role == "user" for m in req.messages):
            raise PmaError("invalid_request", "version must be 1 and messages must hold 1-1000 with a user message")
        if self._inflight >= self.settings.max_concurrent_requests:
            raise PmaError("busy", "the project manager is busy; retry shortly")
        self._inflight += 1
        try:
            async with self._slots:
                return await self._run(req)
        finally:
            self._inflight -= 1

    async def _run(self, req: PmaChatRequest) -> PmaChatResponse:
        from cynode.inference.client import OllamaClient
        from cynode.inference.errors import InferenceError

        url, model = self.inference_url(), self.model() or DEFAULT_MODEL
        if url is None:
            raise PmaError("inference_failed", "no inference backend is available")
        started = time.monotonic()
        deadline = started + max(0.0, req.deadline_ms / 1000)
        messages = compose(self.bundle, req, self.settings.context_char_budget)
        options = {"num_predict": self.settings.max_answer_tokens} if self.settings.max_answer_tokens > 0 else None
        outcome = "error"
        try:
            for attempt in range(2):  # an empty answer gets one retry with the system block + last user message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PmaError("deadline_exceeded", "the request deadline passed")
                timeout = min(self.settings.request_timeout_s, remaining)
                try:
                    async with OllamaClient(url, timeout=timeout) as client:
                        reply = await asyncio.wait_for(client.chat(model, messages, options, stream=False), timeout)
                except TimeoutError:
                    raise PmaError("deadline_exceeded", "the model did not answer in time") from None
                except InferenceError as e:
                    raise PmaError("inference_failed", f"inference failed: {type(e).__name__}") from None
                content = strip_think(reply.message.content if reply.message else "")
                if content:
                    outcome = "success"
                    return PmaChatResponse(content=content, model=model, usage=PmaUsage(
                        prompt_tokens=reply.prompt_eval_count or 0, completion_tokens=reply.eval_count or 0))
                if attempt == 0:
                    last_user = next(m for m in reversed(req.messages) if m.role == "user")
                    messages = [messages[0], {"role": "user", "content": last_user.content}]
            raise PmaError("inference_failed", "the model returned an empty answer")
        finally:
            log.info("pma.completion", extra={"request_id": req.request_id, "user_id": req.user_id,
                                              "project_id": req.project_id, "model": model, "path": "single_pass",
                                              "iterations": 1, "outcome": outcome,
                                              "duration_ms": round((time.monotonic() - started) * 1000)})

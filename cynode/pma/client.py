"""PmaClient over HTTP: the orchestrator's way to a PMA running on another host (service token, retries)."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from cynode.contracts.pma import PmaChatRequest, PmaChatResponse, PmaError, PmaHealth
from cynode.utf8 import decode_json

RETRY_DELAYS = (0.5, 1.0)


class HttpPmaClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 120.0) -> None:
        self.url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def health(self) -> PmaHealth:
        try:
            async with self.session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                text = (await resp.read()).decode(errors="replace")
                if resp.status == 200:
                    return PmaHealth(state="ready", role="project_manager")
                return PmaHealth(state="starting", role="project_manager", detail=text[:200])
        except (aiohttp.ClientError, TimeoutError) as e:
            return PmaHealth(state="unhealthy", role="project_manager", detail=f"unreachable: {type(e).__name__}")

    async def chat(self, request: PmaChatRequest) -> PmaChatResponse:
        body = msgspec.json.encode(request)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "X-Request-Id": request.request_id}
        timeout = aiohttp.ClientTimeout(total=max(1.0, request.deadline_ms / 1000 + 5))
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            if delay:
                await asyncio.sleep(delay)
            try:
                async with self.session.post(f"{self.url}/internal/chat/completion", data=body, headers=headers,
                                             timeout=timeout) as resp:
                    raw = await resp.read()
                    if resp.status == 200:
                        return _answer(raw)
                    err = _error_of(raw, resp.status)
                    if err.code in ("busy", "inference_failed") and attempt < len(RETRY_DELAYS):
                        continue
                    raise err
            except (aiohttp.ClientConnectionError, TimeoutError) as e:
                if attempt == len(RETRY_DELAYS):
                    raise PmaError("unavailable", f"the PMA is unreachable: {type(e).__name__}") from None
        raise PmaError("unavailable", "the PMA did not answer")


def _answer(raw: bytes) -> PmaChatResponse:
    try:
        return decode_json(raw, PmaChatResponse)
    except msgspec.DecodeError as e:  # a ValidationError too: an answer the orchestrator cannot use
        raise PmaError("inference_failed", f"unusable PMA answer: {e}") from None


def _error_of(raw: bytes, status: int) -> PmaError:
    try:
        doc = decode_json(raw)
        return PmaError(str(doc["error"]["code"]), str(doc["error"].get("message", "")))
    except (msgspec.DecodeError, KeyError, TypeError):
        return PmaError("inference_failed" if status >= 500 else "invalid_request", f"PMA answered {status}")

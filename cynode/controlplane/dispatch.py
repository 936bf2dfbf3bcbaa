"""Reaching a node's Worker API: the HTTP client (per-node bearer) and the error kinds the scheduler acts on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import msgspec

from cynode.contracts.workerapi import (
    DispatchFailed,
    DispatchLost,
    DispatchRefused,
    RunJobRequest,
    RunJobResponse,
    WorkerClient,
)
from cynode.utf8 import decode_json

log = logging.getLogger("cynode.controlplane.dispatch")


def _retry_after(headers: Any, default: float = 5.0) -> float:
    try:
        return max(0.5, float(headers.get("Retry-After", default)))
    except (TypeError, ValueError):
        return default


class HttpWorkerClient:
    """POST {base_url}/v1/worker/jobs:run with `Authorization: Bearer <token>` (orchestrator.md §7.1)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, bearer: str) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/v1/worker/jobs:run"
        self.bearer = bearer

    async def run_job(self, request: RunJobRequest, timeout_s: float) -> RunJobResponse:
        body = msgspec.json.encode(request)
        headers = {"Authorization": f"Bearer {self.bearer}", "Content-Type": "application/json"}
        # Only a failure to connect is retried right away (orchestrator.md §7.1): the job cannot have started.
        for attempt in range(3):
            try:
                async with self.session.post(self.url, data=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout_s, connect=5)) as resp:
                    raw = await resp.read()
                    return self._decode(resp.status, resp.headers, raw)
            except aiohttp.ClientConnectorError as e:
                if attempt == 2:  # the job cannot have started: back to the queue without costing an attempt
                    raise DispatchRefused(f"cannot connect to the worker: {e.os_error}", 5.0) from None
                await asyncio.sleep(0.5)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as e:
                raise DispatchLost(f"the worker dropped the connection: {type(e).__name__}") from None
            except TimeoutError:
                raise DispatchFailed(f"the worker did not answer within {timeout_s:.0f} s") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(status: int, headers: Any, raw: bytes) -> RunJobResponse:
        if status in (429, 503, 409):
            raise DispatchRefused(f"worker answered {status}", _retry_after(headers))
        if status != 200:
            detail = ""
            with contextlib.suppress(msgspec.DecodeError, AttributeError):
                detail = str(decode_json(raw).get("detail", ""))
            raise DispatchFailed(f"worker answered {status}" + (f": {detail}" if detail else ""))
        try:
            result = decode_json(raw, RunJobResponse)
        except msgspec.DecodeError as e:
            raise DispatchFailed(f"unusable worker result: {e}") from None
        if result.version != 1:
            raise DispatchFailed(f"unsupported result version {result.version}")
        return result


class WorkerDirectory:
    """Picks the client for a node: the in-process worker when it runs here (chosen in serve.py), else HTTP."""

    def __init__(self, bearer_for: Any) -> None:
        self.local: dict[str, WorkerClient] = {}
        self.bearer_for = bearer_for  # (node_id, acked config_version) -> token
        self._session: aiohttp.ClientSession | None = None

    def client(self, node_slug: str, node_id: str, base_url: str, config_version: str) -> WorkerClient:
        if node_slug in self.local:
            return self.local[node_slug]
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return HttpWorkerClient(self._session, base_url, self.bearer_for(node_id, config_version))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

"""NodeControl over HTTP: the worker's side of registration, config and capability reports (worker.md §4.1-§4.6).

Retry rules: registration 400 is fatal (a configuration error); 401 (wrong PSK) retries every 60 s; 429 honours
Retry-After; 503 or network errors back off 1 s -> 60 s, forever. Any 401 on the node endpoints re-registers once.
The PSK is read at use, never logged or stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from cynode.config import Settings
from cynode.contracts.node import BootstrapPayload, CapabilityReport, ConfigAck, NodeConfig
from cynode.utf8 import decode_json

log = logging.getLogger("cynode.worker.registration")


class RegistrationRejected(Exception):
    """The orchestrator answered 400: the node's configuration is wrong (fatal, exit 2)."""


class StaleConfig(Exception):
    """The ack named a config version the orchestrator no longer issues (409): fetch again."""


class ControlPlaneError(Exception):
    pass


def read_psk(settings: Settings) -> str:
    path = settings.worker.registration_psk_file
    if path:
        p = Path(path).expanduser()
        mode = p.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RegistrationRejected(f"{p}: the PSK file must not be group/world-readable (chmod 600)")
        return p.read_text().strip()
    psk = settings.controlplane.node_registration_psk or os.environ.get("CYNODE_NODE_REGISTRATION_PSK", "")
    if not psk:
        raise RegistrationRejected(
            "no registration PSK: set CYNODE_NODE_REGISTRATION_PSK or worker.registration_psk_file")
    return str(psk)


class HttpNodeControl:
    def __init__(self, settings: Settings, *, max_backoff_s: float = 60.0) -> None:
        self.settings = settings
        self.base = settings.worker.orchestrator_url.rstrip("/")
        self.max_backoff_s = max_backoff_s
        self._session: aiohttp.ClientSession | None = None
        self._bootstrap: BootstrapPayload | None = None
        self._report: CapabilityReport | None = None
        self._jwt_expires = 0.0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def wait_reachable(self) -> None:
        """Any HTTP answer from /readyz (200 or 503) means the control plane is there (startup step 5)."""
        delay = 1.0
        while True:
            try:
                async with self.session.get(f"{self.base}/readyz") as resp:
                    if resp.status in (200, 503):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            log.info("waiting for the control plane at %s", self.base)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def register(self, capability: CapabilityReport) -> BootstrapPayload:
        self._report = capability
        delay = 1.0
        while True:
            body = msgspec.json.encode({"psk": read_psk(self.settings), "capability": capability})
            try:
                async with self.session.post(f"{self.base}/v1/nodes/register", data=body,
                                             headers={"Content-Type": "application/json"}) as resp:
                    raw = await resp.read()
                    if resp.status in (200, 201):
                        payload = decode_json(raw, BootstrapPayload)
                        self._check_bootstrap(payload)
                        self._bootstrap = payload
                        self._jwt_expires = self._expiry(payload.auth.expires_at)
                        log.info("registered with the orchestrator")
                        return payload
                    detail = _detail(raw)
                    if resp.status == 400:
                        raise RegistrationRejected(f"registration refused: {detail}")
                    if resp.status == 401:
                        log.error("registration refused: wrong PSK; retrying in 60 s")
                        await asyncio.sleep(min(60.0, self.max_backoff_s))
                        continue
                    if resp.status == 429:
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "5")))
                        continue
                    log.warning("registration answered %s (%s); backing off", resp.status, detail)
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, ValueError) as e:
                log.warning("registration failed (%s); backing off %.0f s", type(e).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)

    @staticmethod
    def _check_bootstrap(p: BootstrapPayload) -> None:
        if p.version != 1 or not p.auth.node_jwt or not p.orchestrator.endpoints.node_config_url \
                or not p.orchestrator.endpoints.node_report_url:
            raise ValueError("incomplete bootstrap payload")

    @staticmethod
    def _expiry(expires_at: str) -> float:
        try:
            return datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return time.time() + 3600

    async def _authed(self, method: str, url_key: str, body: Any = None) -> tuple[int, bytes]:
        """A node-JWT call; re-registers on 401 (or 5 min before expiry) and retries once."""
        for attempt in (0, 1):
            if self._bootstrap is None or time.time() > self._jwt_expires - 300:
                assert self._report is not None, "register first"
                await self.register(self._report)
            assert self._bootstrap is not None
            url = getattr(self._bootstrap.orchestrator.endpoints, url_key)
            headers = {"Authorization": f"Bearer {self._bootstrap.auth.node_jwt}"}
            data = None
            if body is not None:
                data = msgspec.json.encode(body)
                headers["Content-Type"] = "application/json"
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                if resp.status == 401 and attempt == 0:
                    self._bootstrap = None
                    continue
                return resp.status, raw
        raise ControlPlaneError("the orchestrator keeps refusing the node token")

    async def get_config(self) -> NodeConfig:
        status, raw = await self._authed("GET", "node_config_url")
        if status != 200:
            raise ControlPlaneError(f"config fetch answered {status}: {_detail(raw)}")
        return decode_json(raw, NodeConfig)

    async def ack_config(self, ack: ConfigAck) -> None:
        status, raw = await self._authed("POST", "node_config_url", ack)
        if status == 409:
            raise StaleConfig(_detail(raw))
        if status != 204:
            raise ControlPlaneError(f"config ack answered {status}: {_detail(raw)}")

    async def report_capability(self, report: CapabilityReport) -> None:
        self._report = report
        status, raw = await self._authed("POST", "node_report_url", report)
        if status != 204:
            raise ControlPlaneError(f"capability report answered {status}: {_detail(raw)}")


def _detail(raw: bytes) -> str:
    try:
        doc = decode_json(raw)
        return str(doc.get("detail") or doc)[:300] if isinstance(doc, dict) else str(doc)[:300]
    except msgspec.DecodeError:
        return raw[:200].decode(errors="replace")

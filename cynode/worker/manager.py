"""The Node Manager: the worker's startup sequence and its loop (worker.md §3).

Order (mandatory): clean leftovers and check the runtime; (the Worker API listener is already up, health only);
wait for the control plane; register; fetch config; apply it (bearer, limits, then inference); ack; then report
capabilities every interval (the heartbeat) and poll for new config versions. The process never exits because the
orchestrator or the runtime is unavailable; only a registration refused with 400 is fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from cynode.config import Settings
from cynode.contracts.node import AckError, ConfigAck, NodeConfig, NodeControl
from cynode.http.health import PASS, GateResult
from cynode.worker.capability import CapabilityBuilder, InferenceFacts, RuntimeFacts
from cynode.worker.orchestrator_client import RegistrationRejected, StaleConfig
from cynode.worker.runtime import SandboxRuntime

log = logging.getLogger("cynode.worker.manager")

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
PREVIOUS_TOKEN_GRACE_S = 30.0


class InferenceControl(Protocol):
    """The node-local inference backend (the inference module provides it)."""

    async def apply(self, backend: Any) -> AckError | None: ...

    async def refresh(self) -> None: ...

    def facts(self) -> InferenceFacts: ...


class NoInference:
    """A node whose inference is disabled: never starts a backend."""

    async def apply(self, backend: Any) -> AckError | None:
        if backend is not None and getattr(backend, "enabled", False):
            return AckError(type="local_constraint", message="inference is disabled on this node",
                            details={"field": "inference.mode"})
        return None

    async def refresh(self) -> None:
        return None

    def facts(self) -> InferenceFacts:
        return InferenceFacts()


def effective_config_hash(config: NodeConfig) -> str:
    """sha256 of the canonical applied payload with every secret value replaced by its own sha256 (§4.5)."""
    doc = msgspec.to_builtins(config)
    token = (doc.get("worker_api") or {}).get("orchestrator_bearer_token")
    if token:
        doc["worker_api"]["orchestrator_bearer_token"] = hashlib.sha256(token.encode()).hexdigest()
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeManager:
    def __init__(self, settings: Settings, node_slug: str, control: NodeControl, runtime: SandboxRuntime | None,
                 *, inference: InferenceControl | None = None,
                 base_url: Callable[[], str], on_fatal: Callable[[str], None] = lambda msg: None,
                 revive_runtime: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.settings = settings
        self.node_slug = node_slug
        self.control = control
        self.runtime = runtime
        self.inference: InferenceControl = inference or NoInference()
        self.base_url = base_url
        self.on_fatal = on_fatal
        self.revive_runtime = revive_runtime  # restarts the engine service this node runs; True when it did
        self.capabilities = CapabilityBuilder(settings, node_slug)
        self.runtime_facts = RuntimeFacts(detail="no container runtime configured" if runtime is None else "")
        self.registered = False
        self.config: NodeConfig | None = None
        self.acked_version: str | None = None
        self._token: str | None = None
        self._previous_token: tuple[str, float] | None = None
        self.draining = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.interval_s = float(settings.worker.capability_report_interval_s)
        self._last_runtime_check = 0.0
        # After an ack the orchestrator often answers with another config (e.g. the PM model to warm up):
        # poll again soon instead of a whole interval later.
        self._followup = False

    # -- readiness (worker.md §3.2, first failing gate wins) -------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "draining"
        if self.settings.worker.sandbox.mode != "disabled" and not self.runtime_facts.ok:
            return "runtime_unavailable"
        if not self.registered:
            return "not_registered"
        if self.acked_version is None or self._token is None:
            return "config_not_applied"
        return None

    async def readiness_gate(self) -> GateResult:
        reason = self.not_ready_reason()
        if reason is None:
            return PASS
        messages = {
            "draining": "the node is shutting down",
            "runtime_unavailable": f"no usable container runtime: {self.runtime_facts.detail}",
            "not_registered": "the node has not registered with the orchestrator yet "
                              f"({self.settings.worker.orchestrator_url})",
            "config_not_applied": "the node has not applied a configuration from the orchestrator yet",
        }
        return GateResult(False, reason, messages[reason])

    # -- bearer -----------------------------------------------------------------------------------------------------

    def check_bearer(self, token: str) -> bool:
        """The current token, or the previous one for 30 s after the new config was acked (§4.6)."""
        ok = self._token is not None and hmac.compare_digest(token.encode(), self._token.encode())
        if not ok and self._previous_token is not None:
            prev, until = self._previous_token
            ok = time.monotonic() < until and hmac.compare_digest(token.encode(), prev.encode())
        return ok

    def max_job_timeout_s(self) -> int | None:
        c = self.config.constraints if self.config else None
        return c.max_job_timeout_seconds if c else None

    # -- lifecycle ----------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="node-manager")

    async def stop(self) -> None:
        self.draining = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def wake(self) -> None:
        """Send a report and poll config now (e.g. inference or service state changed)."""
        self._wake.set()

    async def _main(self) -> None:
        try:
            if self.runtime is not None:
                try:
                    await self.runtime.cleanup_leftovers()
                except Exception as e:
                    log.warning("could not clean leftover sandboxes: %s", e)
            await self.check_runtime()
            await self.control.wait_reachable()
            await self.control.register(self._report())
            self.registered = True
            await self._loop()
        except RegistrationRejected as e:
            log.error("%s", e)
            self.on_fatal(str(e))
        except asyncio.CancelledError:
            raise

    async def _loop(self) -> None:
        first = True
        while True:
            try:
                await self.inference.refresh()
                if not first:
                    await self.control.report_capability(self._report())
                await self.sync_config()  # at once after registration (startup steps 6-8), then every interval
                if first:
                    await self.control.report_capability(self._report())
                    first = False
            except (asyncio.CancelledError, RegistrationRejected):
                raise
            except Exception as e:
                log.warning("heartbeat failed: %s: %s", type(e).__name__, e)
            self._wake.clear()
            wait = self.interval_s if self.runtime_facts.ok else min(self.interval_s, 30.0)
            if self._followup:
                self._followup, wait = False, min(wait, 2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if time.monotonic() - self._last_runtime_check >= wait:
                await self.check_runtime()

    def runtime_lost(self) -> None:
        """A job found the engine gone: refuse jobs from now on, and check (and revive) it at once, not at the next
        interval."""
        self.runtime_facts = RuntimeFacts(ok=False, runtime=self.runtime_facts.runtime,
                                          detail="the container engine stopped answering")
        self._last_runtime_check = 0.0
        self.wake()

    async def check_runtime(self) -> None:
        self._last_runtime_check = time.monotonic()
        if self.runtime is None or self.settings.worker.sandbox.mode == "disabled":
            return
        was_ok = self.runtime_facts.ok
        facts = await self._runtime_facts()
        if not facts.ok and self.revive_runtime is not None and await self.revive_runtime():
            log.warning("sandbox runtime: restarted the podman service that had stopped")
            facts = await self._runtime_facts()
        self.runtime_facts = facts
        if self.runtime_facts.ok != was_ok:
            log.log(logging.INFO if self.runtime_facts.ok else logging.ERROR, "sandbox runtime %s: %s",
                    "ready" if self.runtime_facts.ok else "unavailable", self.runtime_facts.detail or "ok")
            if self.registered:
                self.wake()

    async def _runtime_facts(self) -> RuntimeFacts:
        assert self.runtime is not None
        try:
            check = await self.runtime.check()
        except Exception as e:
            return RuntimeFacts(ok=False, detail=f"{type(e).__name__}: {e}")
        return RuntimeFacts(ok=check.ok, runtime=check.runtime, version=check.version, rootless=check.rootless,
                            detail=check.detail)

    def _report(self) -> Any:
        return self.capabilities.build(self.base_url(), self.runtime_facts, self.inference.facts())

    # -- config -------------------------------------------------------------------------------------------------

    async def sync_config(self) -> None:
        config = await self.control.get_config()
        ack = await self.apply(config)
        if ack is None:
            return
        try:
            await self.control.ack_config(ack)
        except StaleConfig:
            log.info("acked a stale config; fetching again")
            self.wake()
            return
        if ack.status == "applied":
            self._activate(config)
            self._followup = True

    async def apply(self, config: NodeConfig) -> ConfigAck | None:
        """Validate and apply atomically; None when there is nothing to do (same or older version)."""
        def failed(kind: str, message: str, details: dict[str, Any] | None = None) -> ConfigAck:
            log.error("config %s refused: %s", config.config_version, message)
            return ConfigAck(version=1, node_slug=self.node_slug, config_version=config.config_version,
                             ack_at=utcnow(), status="failed", error=AckError(type=kind, message=message,
                                                                              details=details))

        if config.version != 1:
            return failed("unsupported_payload_version", f"config version {config.version} is not supported")
        if not ULID.fullmatch(config.config_version):
            return failed("invalid_config", "config_version is not a ULID")
        if config.node_slug != self.node_slug:
            return failed("node_slug_mismatch", f"config is for {config.node_slug}, not {self.node_slug}")
        current = self.acked_version
        if current is not None and config.config_version <= current:
            if config.config_version < current:
                log.warning("ignoring an older config version %s (have %s)", config.config_version, current)
            return None
        if not (config.worker_api and config.worker_api.orchestrator_bearer_token):
            return failed("invalid_config", "the config carries no Worker API bearer token")
        backend = config.inference_backend
        if backend is not None and backend.enabled and self.settings.worker.inference.mode == "disabled":
            return failed("local_constraint", "the orchestrator enables inference but this node disables it",
                          {"field": "inference.mode"})
        error = await self.inference.apply(backend)
        if error is not None:
            return failed(error.type, error.message, error.details)
        return ConfigAck(version=1, node_slug=self.node_slug, config_version=config.config_version, ack_at=utcnow(),
                         status="applied", effective_config_hash=effective_config_hash(config))

    def _activate(self, config: NodeConfig) -> None:
        token = config.worker_api.orchestrator_bearer_token
        if self._token is not None and token != self._token:
            self._previous_token = (self._token, time.monotonic() + PREVIOUS_TOKEN_GRACE_S)
        self._token = token
        self.config = config
        self.acked_version = config.config_version
        log.info("config applied", extra={"config_version": config.config_version})

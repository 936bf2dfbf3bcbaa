"""The worker role: the Node Manager, the job runner and the Worker API listener, composed for serve.py."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from typing import Any

from cynode.config import Settings, parse_listen_addr
from cynode.contracts.node import NodeControl
from cynode.http.app import build_app
from cynode.http.health import Readiness
from cynode.serve import Role
from cynode.worker.api import worker_routes
from cynode.worker.jobs import InProcessWorkerClient, JobRunner
from cynode.worker.manager import NodeManager

log = logging.getLogger("cynode.worker")


def default_node_slug() -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:63] or "node"
    return slug if slug not in ("register", "config", "capability") else f"node-{slug}"


class WorkerNode:
    def __init__(self, settings: Settings, control: NodeControl, *, runtime: Any = None,
                 inference: Any = None, on_fatal: Callable[[str], None] = lambda msg: None) -> None:
        self.settings = settings
        self.node_slug = settings.worker.node_slug or default_node_slug()
        self.runtime = runtime
        self.endpoint: Any = None
        self.public_url = settings.worker.public_base_url or ""
        if inference is None and settings.worker.inference.mode != "disabled":
            from cynode.worker.inference import NodeInference

            inference = NodeInference(settings, on_change=lambda: self.manager.wake())
        self.inference = inference
        self.manager = NodeManager(settings, self.node_slug, control, runtime, inference=inference,
                                   base_url=lambda: self.public_url, on_fatal=on_fatal,
                                   revive_runtime=self._revive_runtime)
        self.runner = JobRunner(settings, runtime, ready=self.manager.not_ready_reason,
                                inference=getattr(inference, "job_handle", None),
                                max_timeout_s=self.manager.max_job_timeout_s, runtime_lost=self.manager.runtime_lost)
        self.client = InProcessWorkerClient(self.runner)
        self.readiness = Readiness()
        self.readiness.add("node", self.manager.readiness_gate)
        max_body = settings.worker.max_request_bytes
        self.app = build_app("worker", worker_routes(self.manager, self.runner, max_body),
                             readiness=self.readiness, max_body_bytes=max_body)
        self.control = control

    def _bound(self, addrs: dict[str, str]) -> None:
        if not self.public_url:
            host, port = parse_listen_addr(addrs["worker"])
            if host in ("0.0.0.0", "::"):  # noqa: S104 - advertise a name others can reach
                host = socket.gethostname()
            self.public_url = f"http://{host}:{port}"

    async def start(self) -> None:
        if self.runtime is None and self.settings.worker.sandbox.mode != "disabled":
            await self._open_runtime()
        await self.manager.start()

    async def _open_runtime(self) -> None:
        """The Docker API of Podman (our own `podman system service` when none answers) or Docker; never the host."""
        from cynode.worker.podman import DockerEndpoint, EndpointUnavailable
        from cynode.worker.runtime.docker_api import DockerApiRuntime

        self.endpoint = DockerEndpoint(self.settings.worker.sandbox, self.settings.worker_state_path)
        try:
            base_url = await self.endpoint.start()
        except EndpointUnavailable as e:
            log.error("no container runtime: %s; the node will not accept jobs", e)
            self.manager.runtime_facts.detail = str(e)
            return
        self.runtime = DockerApiRuntime.from_settings(self.settings, base_url, self.node_slug)
        self.manager.runtime = self.runner.runtime = self.runtime

    async def _revive_runtime(self) -> bool:
        return await self.endpoint.revive() if self.endpoint is not None else False

    async def stop(self) -> None:
        await self.manager.stop()
        endpoint_stop = self.endpoint.stop if self.endpoint is not None else None
        for closer in (getattr(self.inference, "stop", None), getattr(self.runtime, "close", None),
                       endpoint_stop, self.control.close):
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    log.exception("error while stopping the worker")

    def inference_url(self) -> str | None:
        """The node's inference backend, for a colocated orchestrator's direct calls (serve.py wires it)."""
        return getattr(self.inference, "base_url", None)

    def role(self) -> Role:
        return Role(name="worker", listeners=[("worker", self.app, self.settings.worker.listen_addr)],
                    start=self.start, stop=self.stop, bound=self._bound)

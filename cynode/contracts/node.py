"""Node payloads (worker.md §4): registration, capability reports, configuration and its ack, and the NodeControl
interface the worker uses to reach the control plane (in-process when colocated, HTTP otherwise).

What the orchestrator receives is strict (unknown fields rejected); what the node receives ignores unknown fields
but rejects version != 1 (worker.md §4).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec


class _In(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Received by the orchestrator."""


class _Out(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Received by the node: unknown fields are ignored for forward compatibility."""


# -- capability report (node -> orchestrator) -------------------------------------------------------------------------


class NodeIdentity(_In):
    node_slug: str
    name: str | None = None
    labels: list[str] | None = None


class Platform(_In):
    os: str
    arch: str
    distro: str | None = None
    kernel_version: str | None = None


class ContainerRuntimeInfo(_In):
    runtime: str
    version: str | None = None
    rootless_supported: bool | None = None
    rootless_enabled: bool | None = None


class Compute(_In):
    cpu_cores: int
    ram_mb: int
    cpu_model: str | None = None
    storage_free_mb: int | None = None


class GpuDevice(_In):
    vendor: str | None = None
    model: str | None = None
    device_id: str | None = None
    vram_mb: int | None = None
    features: dict[str, Any] | None = None


class Gpu(_In):
    present: bool
    devices: list[GpuDevice] | None = None


class SandboxCaps(_In):
    supported: bool
    features: list[str] | None = None
    max_concurrency: int | None = None


class NetworkInfo(_In):
    orchestrator_reachable: bool | None = None
    outbound_policy: str | None = None


ModelStatus = Literal["available", "loading", "pulling", "failed", "evicted"]


class ModelState(_In):
    name: str
    status: ModelStatus
    size_bytes: int | None = None
    detail: str | None = None


class InferenceCaps(_In):
    supported: bool
    mode: str
    existing_service: bool = False
    running: bool = False
    available_models: list[str] | None = None
    models: list[ModelState] | None = None


class WorkerApiInfo(_In):
    base_url: str


class ManagedServiceStatus(_In):
    service_id: str
    service_type: str
    state: Literal["stopped", "starting", "ready", "unhealthy", "error"]
    endpoints: list[str] | None = None
    ready_at: str | None = None
    observed_generation: str | None = None
    last_error: str | None = None


class ManagedServicesStatus(_In):
    services: list[ManagedServiceStatus]


class CapabilityReport(_In):
    version: int
    reported_at: str
    node: NodeIdentity
    platform: Platform
    compute: Compute
    worker_api: WorkerApiInfo
    container_runtime: ContainerRuntimeInfo | None = None
    gpu: Gpu | None = None
    sandbox: SandboxCaps | None = None
    network: NetworkInfo | None = None
    inference: InferenceCaps | None = None
    managed_services_status: ManagedServicesStatus | None = None


class RegisterRequest(_In):
    psk: str
    capability: CapabilityReport

    def __repr__(self) -> str:  # the PSK never shows in logs or tracebacks
        return f"RegisterRequest(node={self.capability.node.node_slug!r})"


# -- bootstrap (orchestrator -> node) ---------------------------------------------------------------------------------


class BootstrapEndpoints(_Out):
    worker_registration_url: str
    node_config_url: str
    node_report_url: str


class BootstrapOrchestrator(_Out):
    base_url: str
    endpoints: BootstrapEndpoints


class BootstrapAuth(_Out):
    node_jwt: str
    expires_at: str

    def __repr__(self) -> str:
        return f"BootstrapAuth(expires_at={self.expires_at!r})"


class BootstrapPayload(_Out):
    version: int
    issued_at: str
    orchestrator: BootstrapOrchestrator
    auth: BootstrapAuth
    initial_config_version: str | None = None


# -- configuration (orchestrator -> node) -----------------------------------------------------------------------------


class ConfigEndpoints(_Out):
    worker_api_target_url: str
    node_report_url: str
    mcp_gateway_url: str | None = None
    agent_ready_url: str | None = None


class ConfigOrchestrator(_Out):
    base_url: str
    endpoints: ConfigEndpoints


class WorkerApiConfig(_Out):
    orchestrator_bearer_token: str | None = None
    orchestrator_bearer_token_expires_at: str | None = None

    def __repr__(self) -> str:
        return "WorkerApiConfig(orchestrator_bearer_token=***)"


class WantedModel(_Out):
    name: str
    allow_pull: bool = False


class InferenceBackendConfig(_Out):
    enabled: bool = False
    image: str | None = None
    variant: str | None = None
    port: int | None = None
    env: dict[str, str] | None = None
    selected_model: str | None = None
    models: list[WantedModel] | None = None


class SandboxPolicy(_Out):
    allowed_images: list[str] | None = None
    default_network_policy: str | None = None
    allow_privileged: bool | None = None
    allow_host_network: bool | None = None


class UpdatesPolicy(_Out):
    enable_dynamic_config: bool | None = None
    poll_interval_seconds: int | None = None
    allow_service_restart: bool | None = None


class Policy(_Out):
    sandbox: SandboxPolicy | None = None
    updates: UpdatesPolicy | None = None


class Constraints(_Out):
    max_request_bytes: int | None = None
    max_job_timeout_seconds: int | None = None


class NodeConfig(_Out):
    version: int
    config_version: str
    issued_at: str
    node_slug: str
    orchestrator: ConfigOrchestrator
    worker_api: WorkerApiConfig
    policy: Policy | None = None
    inference_backend: InferenceBackendConfig | None = None
    managed_services: dict[str, Any] | None = None
    constraints: Constraints | None = None
    notes: str | None = None


# -- ack (node -> orchestrator) ---------------------------------------------------------------------------------------


class AckError(_In):
    type: str
    message: str
    details: dict[str, Any] | None = None


class ConfigAck(_In):
    version: int
    node_slug: str
    config_version: str
    ack_at: str
    status: str  # applied | failed (rolled_back in P3)
    error: AckError | None = None
    effective_config_hash: str | None = None
    managed_services_status: ManagedServicesStatus | None = None


# -- the interface ----------------------------------------------------------------------------------------------------


class NodeControl(Protocol):
    """How a worker reaches the control plane: in-process when colocated, HTTP with the node JWT otherwise."""

    async def wait_reachable(self) -> None: ...

    async def register(self, capability: CapabilityReport) -> BootstrapPayload: ...

    async def get_config(self) -> NodeConfig: ...

    async def ack_config(self, ack: ConfigAck) -> None: ...

    async def report_capability(self, report: CapabilityReport) -> None: ...

    async def close(self) -> None: ...


# -- node administration (gateway, admin only) ------------------------------------------------------------------------


class NodeSummary(msgspec.Struct, omit_defaults=True, kw_only=True):
    node_id: str
    node_slug: str
    status: str  # active | inactive | drained
    enabled: bool
    dispatchable: bool
    running_jobs: int
    config_version: str | None = None
    config_ack_status: str | None = None
    last_heartbeat: str | None = None
    capability_summary: dict[str, Any] | None = None


class NodeList(msgspec.Struct, omit_defaults=True):
    nodes: list[NodeSummary]
    next_cursor: str | None = None

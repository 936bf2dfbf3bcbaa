"""The node capability report (worker.md §4.2): facts about this host, its sandbox runtime and its inference."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cynode.config import Settings
from cynode.contracts.node import (
    CapabilityReport,
    Compute,
    ContainerRuntimeInfo,
    Gpu,
    InferenceCaps,
    ManagedServicesStatus,
    ModelState,
    NodeIdentity,
    Platform,
    SandboxCaps,
    WorkerApiInfo,
)

SANDBOX_FEATURES = ["netns", "cgroups_v2", "oci_images", "resource_limits", "input_files"]
INFERENCE_SANDBOX_FEATURES = ["uds_inference", "loopback_inference_shim"]


@dataclass
class RuntimeFacts:
    ok: bool = False
    runtime: str = ""
    version: str = ""
    rootless: bool = False
    detail: str = "not checked yet"


@dataclass
class InferenceFacts:
    supported: bool = False
    existing_service: bool = False
    running: bool = False
    models: list[ModelState] = field(default_factory=list)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _distro() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("ID="):
                return line[3:].strip().strip('"')
    except OSError:
        pass
    return None


def _ram_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _free_mb(path: Path) -> int | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(path).free // (1024 * 1024)
    except OSError:
        return None


class CapabilityBuilder:
    """Static host facts are read once; what changes (runtime, inference, services) comes in per report."""

    def __init__(self, settings: Settings, node_slug: str) -> None:
        self.settings = settings
        self.node_slug = node_slug
        self.platform = Platform(os="linux", arch=_arch(), distro=_distro(), kernel_version=platform.release())
        self.cpu_model = _cpu_model()
        self.ram_mb = _ram_mb()

    def labels(self) -> list[str]:
        labels = list(self.settings.worker.labels)
        if self.settings.worker.sandbox.mode == "sandbox_only" and "sandbox_only" not in labels:
            labels.append("sandbox_only")
        return labels

    def build(self, base_url: str, runtime: RuntimeFacts, inference: InferenceFacts,
              services: ManagedServicesStatus | None = None) -> CapabilityReport:
        sb = self.settings.worker.sandbox
        mode = self.settings.worker.inference.mode
        inference_supported = inference.supported and sb.mode != "sandbox_only" and mode != "disabled"
        features = SANDBOX_FEATURES + (INFERENCE_SANDBOX_FEATURES if inference_supported else [])
        return CapabilityReport(
            version=1,
            reported_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            node=NodeIdentity(node_slug=self.node_slug, name=self.node_slug, labels=self.labels() or None),
            platform=self.platform,
            compute=Compute(cpu_cores=os.cpu_count() or 1, ram_mb=self.ram_mb, cpu_model=self.cpu_model,
                            storage_free_mb=_free_mb(self.settings.worker_state_path)),
            worker_api=WorkerApiInfo(base_url=base_url),
            container_runtime=ContainerRuntimeInfo(runtime=runtime.runtime or sb.runtime,
                                                   version=runtime.version or None, rootless_enabled=runtime.rootless),
            gpu=Gpu(present=False),
            sandbox=SandboxCaps(supported=sb.mode != "disabled" and runtime.ok, features=features,
                                max_concurrency=sb.max_concurrency),
            inference=InferenceCaps(
                supported=inference_supported, mode=mode, existing_service=inference.existing_service,
                running=inference.running and inference_supported,
                available_models=[m.name for m in inference.models if m.status == "available"] or None,
                models=inference.models or None,
            ),
            managed_services_status=services,
        )

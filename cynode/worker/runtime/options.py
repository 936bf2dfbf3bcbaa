"""The container options of worker.md §6, in one place: what every sandbox (and its inference shim) is created with.

Pure functions over settings and the request, returning docker-py `create_container` / `create_host_config` keyword
arguments, so the rules can be read (and reviewed) without the engine plumbing around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig, Mount, Ulimit

from cynode.config import MiB, WorkerSandbox
from cynode.contracts.sandbox import SandboxRequest
from cynode.worker.runtime.jobdirs import JobDirs

RUN_DIR_TARGET = "/run/cynode"
CONTAINER_TMP = "/tmp"  # noqa: S108 - the container's own private tmpfs, not the host's /tmp
TMPFS = {CONTAINER_TMP: "rw,nosuid,nodev,size=512m,mode=1777"}
ULIMITS = (("nofile", 1024, 1024), ("nproc", 1024, 1024), ("core", 0, 0))


@dataclass(frozen=True)
class Confinement:
    """User and limits applied to every container the runtime creates."""

    user: str
    nano_cpus: int
    mem_bytes: int
    pids: int

    @classmethod
    def from_settings(cls, sandbox: WorkerSandbox) -> Confinement:
        return cls(user=sandbox.user, nano_cpus=int(sandbox.resources.max_cpu_cores * 1e9),
                   mem_bytes=sandbox.resources.max_memory_mb * MiB, pids=sandbox.resources.max_pids)

    def ids(self) -> tuple[int, int]:
        """The numeric uid:gid; names would be resolved by the image, and the host dirs must be chowned to numbers."""
        uid, _, gid = self.user.partition(":")
        if not uid.isdigit() or not (gid or uid).isdigit():
            raise ValueError(f"sandbox user must be numeric uid:gid, got {self.user!r}")
        if int(uid) == 0:
            raise ValueError("the sandbox user must not be root")
        return int(uid), int(gid or uid)


def container_name(node_slug: str, job_id: str, part: str = "job") -> str:
    name = f"cynode-{node_slug}-job-{job_id}"
    return name if part == "job" else f"{name}-{part}"


def labels(node_slug: str, task_id: str, job_id: str, part: str = "job") -> dict[str, str]:
    """`part` tells a job from its shim: a job joins its shim's network namespace, so it must be removed first."""
    return {"cynodeai.task_id": task_id, "cynodeai.job_id": job_id, "cynodeai.node_slug": node_slug,
            "cynodeai.kind": "sandbox", "cynodeai.part": part}


def host_config(c: Confinement, *, mounts: list[Mount], network_mode: str) -> dict[str, Any]:
    """No network (or only a shim's loopback), no privileges, read-only root, hard limits, no log file on disk."""
    return {
        "mounts": mounts,
        "network_mode": network_mode,
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "init": True,
        "nano_cpus": c.nano_cpus,
        "mem_limit": c.mem_bytes,
        "memswap_limit": c.mem_bytes,  # equal to the memory limit: no swap on top
        "pids_limit": c.pids,
        "ulimits": [Ulimit(name=n, soft=s, hard=h) for n, s, h in ULIMITS],
        # Output is read from the attach stream, bounded; a log driver would also copy all of it to the host disk.
        "log_config": LogConfig(type="none"),
    }


def job_mounts(dirs: JobDirs, run_dir: str | None) -> list[Mount]:
    mounts = [
        Mount("/workspace", str(dirs.workspace), type="bind"),
        Mount("/job", str(dirs.job), type="bind"),
        Mount("/job/inputs", str(dirs.inputs), type="bind", read_only=True),
    ]
    if run_dir:
        mounts.append(Mount(RUN_DIR_TARGET, run_dir, type="bind"))
    return mounts


def job_container(req: SandboxRequest, c: Confinement, node_slug: str) -> dict[str, Any]:
    """create_container() arguments apart from host_config: the job sees exactly the request's env (+ HOME)."""
    return {
        "image": req.image,
        "command": list(req.command) or None,  # empty: the image's own command (job_spec runners)
        "name": container_name(node_slug, req.job_id),
        "labels": labels(node_slug, req.task_id, req.job_id),
        "user": c.user,
        "environment": {"HOME": CONTAINER_TMP, **req.env},
        "working_dir": "/workspace",
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }


def shim_container(req: SandboxRequest, c: Confinement, node_slug: str) -> dict[str, Any]:
    assert req.shim is not None
    return {
        "image": req.shim.image,
        "command": list(req.shim.command),
        "name": container_name(node_slug, req.job_id, "shim"),
        "labels": labels(node_slug, req.task_id, req.job_id, "shim"),
        "user": c.user,
        "environment": {"HOME": CONTAINER_TMP},
        "working_dir": CONTAINER_TMP,
        "detach": True,
        "tty": False,
    }


def probe_container(req: SandboxRequest, c: Confinement, node_slug: str, timeout_s: float) -> dict[str, Any]:
    """A one-shot container in the shim's network namespace that exits 0 once the shim's health URL answers."""
    assert req.shim is not None
    return {
        "image": req.shim.image,
        "command": ["python3", "-c", SHIM_PROBE, req.shim.healthcheck_url, str(timeout_s)],
        "name": container_name(node_slug, req.job_id, "probe"),
        "labels": labels(node_slug, req.task_id, req.job_id, "probe"),
        "user": c.user,
        "environment": {"HOME": CONTAINER_TMP},
        "working_dir": CONTAINER_TMP,
        "detach": True,
        "tty": False,
    }


# Runs in the probe container (python3 is in the sandbox image): poll the health URL over the shim's loopback.
SHIM_PROBE = """\
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read()
        sys.exit(0)
    except Exception:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""

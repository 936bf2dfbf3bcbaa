"""OOM-kill evidence from the container's memory cgroup, for engines that do not report it.

Podman 4.3 with runc on cgroup v1 leaves `State.OOMKilled` false even when the kernel OOM-killed the job (checked on
the build machines, with and without an init process), but the exited container's cgroup keeps its `oom_kill`
counter until the container is removed.  This only works when the engine runs on this host; elsewhere it finds
nothing and the engine's own flag is all there is.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_MAX_DEPTH = 6  # libpod_parent/libpod-<id>, machine.slice/libpod-<id>.scope, user.slice/.../libpod-<id>.scope


def _memory_roots() -> list[Path]:
    v1 = CGROUP_ROOT / "memory"
    if v1.is_dir():
        return [v1]
    return [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.controllers").exists() else []


def _container_dirs(container_id: str) -> list[Path]:
    found = []
    for root in _memory_roots():
        base_depth = len(root.parts)
        for dirpath, dirnames, _ in os.walk(root):
            if container_id in os.path.basename(dirpath):
                found.append(Path(dirpath))
                dirnames.clear()
            elif len(Path(dirpath).parts) - base_depth >= _MAX_DEPTH:
                dirnames.clear()
    return found


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def oom_kills(container_id: str) -> int:
    """How many processes the kernel OOM-killed in the container's memory cgroup (0 when it cannot be read)."""
    total = 0
    for d in _container_dirs(container_id):
        total += _counter(d / "memory.oom_control", "oom_kill") + _counter(d / "memory.events", "oom_kill")
    return total

"""Per-job host directories bind-mounted into a sandbox (worker.md §6 "Mounts").

    <mount_root>/<job_id>/workspace      -> /workspace   rw
    <mount_root>/<job_id>/job            -> /job         rw  (artifacts/, a writable result.json)
    <mount_root>/<job_id>/job/inputs     -> /job/inputs  ro  (input files 0444, owned by the worker)

Directories are 0700 and owned by the sandbox uid, so only the job (and root) can enter them.  Input files stay
owned by the worker: the job can read them but neither change nor chmod them.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# Job ids are UUIDs on the wire; this only has to keep a name inside mount_root (and allow the check's own id).
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_INPUT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class UnsafePath(ValueError):
    """A job id or input file name that could escape its directory."""


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise UnsafePath(f"job id {job_id!r} is not a safe directory name")
    return job_id


def check_input_name(name: str) -> str:
    if not _INPUT_NAME.fullmatch(name) or name in (".", ".."):
        raise UnsafePath(f"input file name {name!r} is not allowed")
    return name


@dataclass(frozen=True)
class JobDirs:
    root: Path  # <mount_root>/<job_id>

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def job(self) -> Path:
        return self.root / "job"

    @property
    def inputs(self) -> Path:
        return self.root / "job" / "inputs"


class JobDirFactory:
    """Creates and removes job dirs under one mount root, owned by the sandbox's uid/gid."""

    def __init__(self, mount_root: Path, uid: int, gid: int) -> None:
        self.mount_root = Path(mount_root)
        self.uid, self.gid = uid, gid

    def ensure_root(self) -> None:
        self.mount_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, job_id: str, input_files: dict[str, bytes]) -> JobDirs:
        for name in input_files:
            check_input_name(name)
        self.ensure_root()
        dirs = JobDirs(self.mount_root / check_job_id(job_id))
        dirs.root.mkdir(mode=0o700)  # exists already -> FileExistsError: never reuse (or later delete) another's dir
        try:
            for d in (dirs.workspace, dirs.job, dirs.job / "artifacts", dirs.inputs):
                d.mkdir(mode=0o700)
            (dirs.job / "result.json").touch(mode=0o600)
            for name, content in input_files.items():
                _write_readonly(dirs.inputs, name, content)
            for path in (dirs.workspace, dirs.job, dirs.job / "artifacts", dirs.job / "result.json", dirs.inputs):
                self._give(path)
        except BaseException:
            shutil.rmtree(dirs.root, ignore_errors=True)
            raise
        return dirs

    def _give(self, path: Path) -> None:
        # Needs root when the ids differ; rootless Podman would need `podman unshare chown` (not supported yet).
        if (self.uid, self.gid) != (os.geteuid(), os.getegid()):
            os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, 0o600 if path.is_file() else 0o700)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.mount_root / check_job_id(job_id), ignore_errors=True)

    def leftovers(self) -> list[str]:
        if not self.mount_root.is_dir():
            return []
        return [p.name for p in self.mount_root.iterdir() if p.is_dir() and _JOB_ID.fullmatch(p.name)]


def _write_readonly(directory: Path, name: str, content: bytes) -> None:
    path = directory / name
    if path.parent != directory:  # belt and braces over the name pattern
        raise UnsafePath(f"input file name {name!r} is not allowed")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o444)  # the umask must not decide the mode
    finally:
        os.close(fd)

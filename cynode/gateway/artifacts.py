"""Task artifact files under `<data_dir>/artifacts/<task_id>/<sha256>` (orchestrator.md §6.7).

Uploads stream into a staging file while their SHA-256 is computed, then move to their content address. The create
transaction commits only after the files exist; if it fails, `discard(task_id)` removes them again. The scheduler
reads files back with `read(storage_ref)` to send attachments to sandbox jobs as input_files.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

STORAGE_PREFIX = "file:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class StoredFile:
    storage_ref: str  # file:artifacts/<task_id>/<sha256>
    sha256: str
    size: int


class ArtifactStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "artifacts"

    def task_dir(self, task_id: str) -> Path:
        return self.root / str(uuid.UUID(task_id))

    def path_of(self, storage_ref: str) -> Path:
        """The file behind a storage_ref; refuses anything outside <data_dir>/artifacts."""
        if not storage_ref.startswith(STORAGE_PREFIX + "artifacts/"):
            raise ValueError("not an artifact storage_ref")
        parts = storage_ref[len(STORAGE_PREFIX):].split("/")
        if len(parts) != 3 or not _HEX64.fullmatch(parts[2]):
            raise ValueError("malformed artifact storage_ref")
        return self.task_dir(parts[1]) / parts[2]

    def read(self, storage_ref: str) -> bytes:
        """The bytes of a stored artifact (blocking: call it through asyncio.to_thread on the server path)."""
        return self.path_of(storage_ref).read_bytes()

    async def aread(self, storage_ref: str) -> bytes:
        return await asyncio.to_thread(self.read, storage_ref)

    def open_upload(self, task_id: str) -> Upload:
        return Upload(self, task_id)

    def discard(self, task_id: str) -> None:
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)

    async def adiscard(self, task_id: str) -> None:
        await asyncio.to_thread(self.discard, task_id)


class Upload:
    """One incoming file: chunks are hashed and written (in a thread) to a staging name, then renamed to the hash."""

    def __init__(self, store: ArtifactStore, task_id: str) -> None:
        self.store = store
        self.task_id = task_id
        self.dir = store.task_dir(task_id)
        self.tmp = self.dir / f".upload-{uuid.uuid4().hex}"
        self.hasher = hashlib.sha256()
        self.size = 0
        self._fh: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0

    def _file(self) -> BinaryIO:
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/abort()
        return self._fh

    def _write(self, data: bytes) -> None:
        self._file().write(data)

    async def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= 1024 * 1024:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending or self._fh is None:
            data = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            await asyncio.to_thread(self._write, data)

    def _finish(self) -> StoredFile:
        fh = self._file()
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        digest = self.hasher.hexdigest()
        os.replace(self.tmp, self.dir / digest)
        return StoredFile(f"{STORAGE_PREFIX}artifacts/{self.task_id}/{digest}", digest, self.size)

    async def finish(self) -> StoredFile:
        await self._flush()
        return await asyncio.to_thread(self._finish)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

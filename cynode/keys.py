"""Process secrets that are configured or else generated once into <data_dir>/secrets/<name> (mode 0600).

There is never a built-in default value (orchestrator.md §3, §9.3). Logs show the path, never the value.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from cynode.errors import ConfigError

log = logging.getLogger(__name__)

MIN_BYTES = 32


def load_or_create(data_dir: Path, name: str, configured: str | None) -> bytes:
    if configured is not None:
        value = configured.encode()
        if len(value) < MIN_BYTES:
            raise ConfigError(f"{name}: must be at least {MIN_BYTES} bytes")
        return value
    directory = data_dir / "secrets"
    path = directory / name
    try:
        if path.exists():
            value = path.read_bytes().strip()
            if len(value) < MIN_BYTES:
                raise ConfigError(f"{path}: secret file holds fewer than {MIN_BYTES} bytes")
            return value
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        value = secrets.token_urlsafe(48).encode()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        log.info("generated a new secret", extra={"path": str(path)})
        return value
    except OSError as e:
        raise ConfigError(f"{path}: cannot read or create the secret file ({e.strerror})") from None

"""The CLI's own config file (cli.md): `$XDG_CONFIG_HOME/cynode/config.toml`, else `~/.config/cynode/config.toml`.

Keys: gateway_url, token, refresh_token, credential_helper; unknown keys are ignored (and kept when we write).
The file is read-only except at login/logout, when it is written atomically (temp file + rename) with mode 0600 in a
0700 directory. Env overrides: CYNODE_GATEWAY_URL (over gateway_url) and CYNODE_TOKEN (over every other token source).
Token values never appear in repr() or output.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_GATEWAY = "http://localhost:12080"
KNOWN = ("gateway_url", "token", "refresh_token", "credential_helper")


class ConfigFileError(Exception):
    """The config file does not parse (exit 2 before anything runs)."""


class CredentialHelperError(Exception):
    """The credential helper failed (treated as an auth problem)."""


def default_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cynode" / "config.toml"


@dataclass
class ClientConfig:
    path: Path
    gateway_url: str | None = None
    token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    credential_helper: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return (self.environ.get("CYNODE_GATEWAY_URL") or self.gateway_url or DEFAULT_GATEWAY).rstrip("/")

    @property
    def env_token(self) -> str | None:
        return self.environ.get("CYNODE_TOKEN") or None

    def resolve_token(self) -> tuple[str | None, str]:
        """(token, source): CYNODE_TOKEN, then the file's token, then the credential helper, else none."""
        if self.env_token:
            return self.env_token, "env"
        if self.token:
            return self.token, "file"
        if self.credential_helper:
            return run_helper(self.credential_helper), "helper"
        return None, "none"


def load(explicit: str | None, environ: Mapping[str, str] | None = None) -> ClientConfig:
    env = dict(os.environ if environ is None else environ)
    path = Path(explicit).expanduser() if explicit else default_path(env)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigFileError(f"{path}: {e}") from None
    known = {k: data.get(k) for k in KNOWN}
    for k, v in known.items():
        if v is not None and not isinstance(v, str):
            raise ConfigFileError(f"{path}: {k} must be a string")
    extra = {k: v for k, v in data.items() if k not in KNOWN}
    return ClientConfig(path=path, extra=extra, environ=env, **known)


def _toml_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string with ASCII escapes is a valid TOML basic string
    return None  # tables and arrays of unknown keys are not rewritten


def save(cfg: ClientConfig) -> None:
    """Write atomically: directory 0700, file 0600, temp file + rename."""
    cfg.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cfg.path.parent == default_path(cfg.environ).parent:
        os.chmod(cfg.path.parent, 0o700)
    lines = ["# cynode CLI configuration (written by `cynode auth login/logout`)"]
    for k in KNOWN:
        v = getattr(cfg, k)
        if v:
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in cfg.extra.items():
        text = _toml_value(v)
        if text is not None and k.replace("_", "").replace("-", "").isalnum():
            lines.append(f"{k} = {text}")
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=cfg.path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cfg.path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_helper(command: str) -> str | None:
    try:
        out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=15, check=True)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        raise CredentialHelperError(f"credential_helper failed: {type(e).__name__}") from None
    token = out.stdout.strip()
    return token or None

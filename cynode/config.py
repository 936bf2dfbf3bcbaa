"""One validated settings tree: cynode.toml, then the spec's env names, then CYNODE_* env vars.

Every key has a default, so an empty file (or none) is a working single-host setup. A bad value or an unknown
key raises ConfigError naming the dotted key; the CLI prints it on one line and exits 2.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from cynode.errors import ConfigError

MiB = 1024 * 1024


class Secret(str):
    """A string that never shows itself in repr() (so settings can be logged or printed safely)."""

    def __repr__(self) -> str:
        return "Secret('***')"


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: int | float | str) -> float:
    """'15m' -> 900.0; bare numbers are seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 15m, 24h, 7d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_listen_addr(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' or ':port' -> (host, port); port 0 means 'any free port'."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f"invalid listen address {value!r} (expected host:port)")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':port' means all interfaces, as in Go
    return host, port


def _check_url(value: str | None, *, allow_unix: bool = False) -> None:
    if value is None:
        return
    schemes = ("http://", "https://") + (("unix://", "http+unix://") if allow_unix else ())
    if not value.startswith(schemes):
        raise ValueError(f"invalid URL {value!r} (expected {' or '.join(s.rstrip(':/') for s in schemes)})")


def _field(name: str, check: Any, *args: Any) -> None:
    """Run a value check and prefix its error with the field name, so the message names the dotted key."""
    try:
        check(*args)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class LoggingSettings(_Section):
    format: str = "text"
    level: str = "info"

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ValueError(f"format: must be text or json, got {self.format!r}")
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"level: must be debug, info, warning or error, got {self.level!r}")


class DbSettings(_Section):
    url: Secret | None = None  # None -> embedded PostgreSQL under data_dir/postgres
    pool_min: int = 2
    pool_max: int = 10
    statement_timeout_ms: int = 10_000
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url: must start with postgresql://")
        if not 1 <= self.pool_min <= self.pool_max:
            raise ValueError("pool_min: pool sizes must satisfy 1 <= pool_min <= pool_max")


class GatewaySettings(_Section):
    listen_addr: str = "127.0.0.1:12080"
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    login_rate_per_min: int = 60
    user_rate_per_min: int = 600
    request_timeout_s: float = 30.0
    max_body_bytes: int = 1 * MiB
    max_auth_body_bytes: int = 16 * 1024
    max_task_json_bytes: int = 4 * MiB
    max_task_multipart_bytes: int = 170 * MiB
    max_chat_body_bytes: int = 10 * MiB

    def __post_init__(self) -> None:
        _field("listen_addr", parse_listen_addr, self.listen_addr)


class ControlPlaneSettings(_Section):
    listen_addr: str = "127.0.0.1:12082"
    public_url: str = "http://localhost:12082"
    node_registration_psk: Secret | None = None
    worker_api_target_url: str | None = None
    node_jwt_ttl: int | str = "24h"
    max_body_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        _field("listen_addr", parse_listen_addr, self.listen_addr)
        _field("public_url", _check_url, self.public_url)
        _field("worker_api_target_url", _check_url, self.worker_api_target_url)
        _field("node_jwt_ttl", parse_duration, self.node_jwt_ttl)


class AuthSettings(_Section):
    jwt_secret: Secret | None = None
    access_ttl: int | str = "15m"
    refresh_ttl: int | str = "7d"
    lockout_failures: int = 10
    lockout_window: int | str = "15m"
    max_concurrent_hashes: int = 4

    def __post_init__(self) -> None:
        for name in ("access_ttl", "refresh_ttl", "lockout_window"):
            _field(name, parse_duration, getattr(self, name))
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            raise ValueError("jwt_secret: must be at least 32 bytes")


class AdminUserSettings(_Section):
    handle: str = "admin"
    password_env: str = "CYNODE_ADMIN_PASSWORD"


class OrchestratorSettings(_Section):
    secret_key: Secret | None = None
    bootstrap_yaml: str | None = None
    admin_user: AdminUserSettings = msgspec.field(default_factory=AdminUserSettings)

    def __post_init__(self) -> None:
        if self.secret_key is not None and len(self.secret_key.encode()) < 32:
            raise ValueError("secret_key: must be at least 32 bytes")


class SchedulerSettings(_Section):
    enabled: bool = True
    poll_interval_ms: int = 1000
    max_concurrent_dispatch: int = 4
    dispatch_timeout_s: int = 300
    lease_grace_s: int = 30
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.poll_interval_ms < 10 or self.max_concurrent_dispatch < 1 or self.dispatch_timeout_s < 1:
            raise ValueError(
                "poll_interval_ms: needs poll_interval_ms >= 10, max_concurrent_dispatch >= 1, dispatch_timeout_s >= 1"
            )


class InferenceSettings(_Section):
    url: str | None = None  # an Ollama (or compatible) URL the orchestrator calls directly (Option B)
    model: str | None = None
    request_timeout_s: float = 120.0
    max_answer_tokens: int = 1024  # num_predict for prompt tasks (0 = the backend's default)

    def __post_init__(self) -> None:
        _field("url", _check_url, self.url)


class SandboxJobSettings(_Section):
    """What the orchestrator puts into the jobs it creates."""

    default_image: str = "localhost/cynode-sandbox:0.1"
    model_call_image: str = "localhost/cynode-sandbox:0.1"
    default_timeout_s: int = 300


class AuditSettings(_Section):
    retention_days: int = 90


class ChatSettings(_Section):
    thread_idle_rotate_s: int = 7200
    retention_days: int = 180
    max_concurrent_per_user: int = 4
    request_timeout_s: float = 300.0  # the chat write timeout; must exceed max_wait_s
    max_wait_s: float = 120.0  # wait cap over routing incl. retries (504 after it)
    max_inflight: int = 32  # chat completions in flight per gateway process (503 cynodeai_overloaded above it)
    keepalive_s: float = 15.0  # SSE `: keep-alive` interval while the PMA works
    history_max_messages: int = 40
    history_max_chars: int = 24000

    def __post_init__(self) -> None:
        if not 10 <= self.max_wait_s <= 600:
            raise ValueError("max_wait_s: must be from 10 to 600 seconds")
        if self.request_timeout_s <= self.max_wait_s:
            raise ValueError("request_timeout_s: the chat write timeout must exceed max_wait_s")
        if self.max_concurrent_per_user < 0 or self.max_inflight < 0:
            raise ValueError("max_inflight: limits must not be negative (0 = off)")
        if self.keepalive_s <= 0:
            raise ValueError("keepalive_s: must be positive")
        if self.history_max_messages < 1 or self.history_max_chars < 1:
            raise ValueError("history_max_messages: history limits must be at least 1")


class WorkerResources(_Section):
    max_cpu_cores: float = 2.0
    max_memory_mb: int = 2048
    max_pids: int = 512

    def __post_init__(self) -> None:
        if self.max_cpu_cores <= 0 or self.max_memory_mb < 16 or self.max_pids < 8:
            raise ValueError("max_memory_mb: limits must be positive (max_memory_mb >= 16, max_pids >= 8)")


class WorkerTimeouts(_Section):
    default_seconds: int = 3600
    max_seconds: int = 10800


class WorkerSandbox(_Section):
    mode: str = "allow"  # allow | sandbox_only | disabled
    runtime: str = "podman"  # podman | docker
    docker_host: str | None = None  # unix:///... ; None -> $XDG_RUNTIME_DIR/podman/podman.sock, /run/podman/...
    start_podman_service: bool = True  # start `podman system service` on our own socket when none answers
    max_concurrency: int = 4
    default_image: str = "localhost/cynode-sandbox:0.1"
    allowed_images: list[str] = msgspec.field(default_factory=list)
    pull: str = "never"  # never | missing
    mount_root: str | None = None
    resources: WorkerResources = msgspec.field(default_factory=WorkerResources)
    timeouts: WorkerTimeouts = msgspec.field(default_factory=WorkerTimeouts)
    user: str = "65534:65534"
    inference_loopback_shim: bool = True
    max_stdout_bytes: int = 262144
    max_stderr_bytes: int = 262144

    def __post_init__(self) -> None:
        if self.mode not in ("allow", "sandbox_only", "disabled"):
            raise ValueError(f"mode: must be allow, sandbox_only or disabled, got {self.mode!r}")
        if self.runtime not in ("podman", "docker"):
            raise ValueError(f"runtime: must be podman or docker, got {self.runtime!r}")
        if self.pull not in ("never", "missing"):
            raise ValueError(f"pull: must be never or missing, got {self.pull!r}")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency: must be >= 1")
        if not 1 <= self.max_stdout_bytes <= 262144 or not 1 <= self.max_stderr_bytes <= 262144:
            raise ValueError("max_stdout_bytes: max_stdout_bytes/max_stderr_bytes may only be lowered from 262144")
        if self.user.split(":")[0] in ("0", "root"):
            raise ValueError("user: the sandbox user must not be root")


class WorkerInference(_Section):
    mode: str = "allow"  # allow | disabled | require
    backend: str = "auto"  # auto | existing | embedded
    existing_url: str = "http://127.0.0.1:11434"
    embedded_listen_addr: str = "127.0.0.1:0"
    max_concurrency: int = 4
    models_dir: str | None = None  # extra GGUF files (<name>.gguf) the built-in server offers
    n_ctx: int = 4096
    n_threads: int = 0  # 0 -> number of cores

    def __post_init__(self) -> None:
        if self.mode not in ("allow", "disabled", "require"):
            raise ValueError(f"mode: must be allow, disabled or require, got {self.mode!r}")
        if self.backend not in ("auto", "existing", "embedded"):
            raise ValueError(f"backend: must be auto, existing or embedded, got {self.backend!r}")
        _field("existing_url", _check_url, self.existing_url)
        _field("embedded_listen_addr", parse_listen_addr, self.embedded_listen_addr)


class WorkerSettings(_Section):
    node_slug: str | None = None  # default: derived from the hostname
    labels: list[str] = msgspec.field(default_factory=list)
    listen_addr: str = "127.0.0.1:12090"
    public_base_url: str | None = None  # default http://<listen host>:<port>
    orchestrator_url: str = "http://localhost:12082"
    registration_psk_file: str | None = None
    state_dir: str | None = None  # default <data_dir>/worker
    capability_report_interval_s: int = 60
    config_poll_interval_s: int = 60
    shutdown_grace_s: int = 10
    max_request_bytes: int = 10 * MiB
    sandbox: WorkerSandbox = msgspec.field(default_factory=WorkerSandbox)
    inference: WorkerInference = msgspec.field(default_factory=WorkerInference)

    def __post_init__(self) -> None:
        _field("listen_addr", parse_listen_addr, self.listen_addr)
        _field("public_base_url", _check_url, self.public_base_url)
        _field("orchestrator_url", _check_url, self.orchestrator_url)
        if self.node_slug is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", self.node_slug):
            raise ValueError(f"node_slug: {self.node_slug!r} must match ^[a-z0-9][a-z0-9-]{{0,62}}$")
        if self.node_slug in ("register", "config", "capability"):
            raise ValueError(f"node_slug: {self.node_slug!r} is reserved")


class PmaSettings(_Section):
    role: str | None = None  # project_manager | project_analyst; required for --role pma
    service_id: str = "pma-main"
    listen_addr: str = "127.0.0.1:12086"
    url: str | None = None  # where the orchestrator reaches a PMA that is not colocated
    service_token: Secret | None = None
    inference_url: str | None = None  # a PMA on its own host: its Ollama-compatible backend
    model: str | None = None
    instructions_root: str | None = None
    instructions_project_manager: str | None = None
    instructions_project_analyst: str | None = None
    request_timeout_s: float = 120.0
    max_retries: int = 2
    max_concurrent_requests: int = 4
    context_char_budget: int = 24000
    max_tool_iterations: int = 3
    max_answer_tokens: int = 512

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ("project_manager", "project_analyst"):
            raise ValueError(f"role: must be project_manager or project_analyst, got {self.role!r}")
        _field("listen_addr", parse_listen_addr, self.listen_addr)
        _field("url", _check_url, self.url)
        _field("inference_url", lambda u: _check_url(u, allow_unix=True), self.inference_url)


class Settings(_Section):
    data_dir: str = ""
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    db: DbSettings = msgspec.field(default_factory=DbSettings)
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    controlplane: ControlPlaneSettings = msgspec.field(default_factory=ControlPlaneSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    orchestrator: OrchestratorSettings = msgspec.field(default_factory=OrchestratorSettings)
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    inference: InferenceSettings = msgspec.field(default_factory=InferenceSettings)
    sandbox: SandboxJobSettings = msgspec.field(default_factory=SandboxJobSettings)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    chat: ChatSettings = msgspec.field(default_factory=ChatSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    pma: PmaSettings = msgspec.field(default_factory=PmaSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def worker_state_path(self) -> Path:
        return Path(self.worker.state_dir).expanduser() if self.worker.state_dir else self.data_path / "worker"


# Env names the spec files give, mapped to dotted keys. Applied before the generic CYNODE_* names.
SPEC_ENV: dict[str, tuple[str, ...]] = {
    "data_dir": ("CYNODE_DATA_DIR",),
    "db.url": ("DATABASE_URL", "CYNODE_DATABASE_URL"),
    "gateway.listen_addr": ("USER_GATEWAY_LISTEN_ADDR",),
    "controlplane.listen_addr": ("CONTROL_PLANE_LISTEN_ADDR",),
    "controlplane.public_url": ("ORCHESTRATOR_PUBLIC_URL",),
    "controlplane.worker_api_target_url": ("WORKER_API_TARGET_URL",),
    "controlplane.node_registration_psk": ("CYNODE_NODE_REGISTRATION_PSK",),
    "controlplane.node_jwt_ttl": ("CYNODE_NODE_JWT_TTL",),
    "auth.jwt_secret": ("CYNODE_JWT_SECRET",),
    "auth.access_ttl": ("CYNODE_ACCESS_TTL",),
    "auth.refresh_ttl": ("CYNODE_REFRESH_TTL",),
    "orchestrator.secret_key": ("CYNODE_SECRET_KEY",),
    "orchestrator.bootstrap_yaml": ("CYNODE_BOOTSTRAP_YAML",),
    "scheduler.poll_interval_ms": ("DISPATCH_POLL_INTERVAL",),
    "scheduler.dispatch_timeout_s": ("DISPATCH_HTTP_TIMEOUT",),
    "inference.url": ("INFERENCE_URL", "OLLAMA_BASE_URL"),
    "inference.model": ("INFERENCE_MODEL",),
    "worker.orchestrator_url": ("ORCHESTRATOR_URL",),
    "worker.node_slug": ("NODE_SLUG",),
    "worker.public_base_url": ("NODE_ADVERTISED_WORKER_API_URL",),
    "worker.capability_report_interval_s": ("CAPABILITY_REPORT_INTERVAL",),
    "worker.sandbox.runtime": ("CONTAINER_RUNTIME",),
    "worker.sandbox.docker_host": ("DOCKER_HOST",),
    "worker.sandbox.mount_root": ("CYNODE_SANDBOX_MOUNT_ROOT",),
    "worker.inference.existing_url": ("OLLAMA_UPSTREAM_URL",),
    "pma.url": ("PMA_URL",),
    "pma.role": ("PMA_ROLE",),
    "pma.service_id": ("PMA_SERVICE_ID",),
    "pma.listen_addr": ("PMA_LISTEN_ADDR",),
    "pma.inference_url": ("OLLAMA_BASE_URL", "INFERENCE_URL"),
    "pma.instructions_root": ("PMA_INSTRUCTIONS_ROOT",),
    "pma.instructions_project_manager": ("PMA_INSTRUCTIONS_PROJECT_MANAGER",),
    "pma.instructions_project_analyst": ("PMA_INSTRUCTIONS_PROJECT_ANALYST",),
    "pma.service_token": ("CYNODE_PMA_SERVICE_TOKEN",),
}

# CYNODE_* variables that are not server settings (CLI, secrets read at use, the config path itself).
NON_SETTING_ENV = {
    "CYNODE_CONFIG", "CYNODE_TOKEN", "CYNODE_GATEWAY_URL", "CYNODE_ADMIN_PASSWORD",
    "CYNODE_SECURE_STORE_MASTER_KEY_B64",
}


def default_data_dir(environ: dict[str, str]) -> str:
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "cynode")


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{p}: expected a table")
    node[leaf] = value


def _env_value(raw: str) -> Any:
    """Env values are strings; lists and tables may be given as JSON (e.g. '["a","b"]')."""
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _resolve_generic(name: str, struct: type[msgspec.Struct], prefix: str = "") -> str | None:
    """Map 'GATEWAY_LISTEN_ADDR' to 'gateway.listen_addr' by walking the settings tree (longest field first)."""
    low = name.lower()
    fields = sorted(msgspec.structs.fields(struct), key=lambda f: -len(f.name))
    for f in fields:
        if low == f.name:
            return prefix + f.name
        if low.startswith(f.name + "_"):
            sub = f.type
            if isinstance(sub, type) and issubclass(sub, msgspec.Struct):
                found = _resolve_generic(name[len(f.name) + 1 :], sub, prefix + f.name + ".")
                if found:
                    return found
    return None


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, names in SPEC_ENV.items():
        for n in names:  # later names in the tuple win
            if environ.get(n):
                _set_dotted(tree, dotted, _env_value(environ[n]))
    for name, raw in environ.items():
        if not name.startswith("CYNODE_") or name in NON_SETTING_ENV or raw == "":
            continue
        key = _resolve_generic(name[len("CYNODE_") :], Settings)
        if key:
            _set_dotted(tree, key, _env_value(raw))
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _dotted_path(msg: str) -> str:
    """msgspec says '... - at `$.gateway.listen_addr`'; turn that into 'gateway.listen_addr: ...'."""
    m = re.search(r"^(.*?) - at `\$\.?([^`]*)`$", msg)
    text, path = (m.group(1), m.group(2)) if m else (msg, "")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return f"{key}: unknown key"
    own = re.match(r"^([a-z_]+): (.*)$", text)  # a __post_init__ check names its field first
    if own:
        path, text = (f"{path}.{own.group(1)}" if path else own.group(1)), own.group(2)
    return f"{path}: {text}" if path else text


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load cynode.toml (path, else $CYNODE_CONFIG, else ./cynode.toml if present) and apply env overrides."""
    environ = dict(os.environ if environ is None else environ)
    source = path or environ.get("CYNODE_CONFIG") or ("cynode.toml" if Path("cynode.toml").is_file() else None)
    tree: dict[str, Any] = {}
    label = "environment"
    if source:
        p = Path(source).expanduser()
        try:
            tree = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{p}: {e}") from None
        label = str(p)
    tree = _merge(tree, env_overrides(environ))
    try:
        settings = msgspec.convert(tree, Settings, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{label}: {_dotted_path(str(e))}") from None
    if not settings.data_dir:
        settings = msgspec.structs.replace(settings, data_dir=default_data_dir(environ))
    return settings

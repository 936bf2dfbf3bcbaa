"""A Docker-API endpoint for the sandbox runtime: an answering engine socket, else our own `podman system service`.

Resolution (worker.md §1): `worker.sandbox.docker_host`, else `DOCKER_HOST`, else `$XDG_RUNTIME_DIR/podman/podman.sock`,
else `/run/podman/podman.sock`.  When none answers and `start_podman_service` is on (runtime podman, `podman`
installed), the worker runs `podman system service --time=0 unix://<state_dir>/podman/podman.sock` as its child,
with our containers.conf (runc, explicit ulimits) and a scrubbed environment, and stops it at shutdown.  Nothing
here ever runs a job on the host: no endpoint means no runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from cynode.config import WorkerSandbox

log = logging.getLogger(__name__)

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
SYSTEM_SOCKET = "/run/podman/podman.sock"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL
# Host variables the podman service needs to find its tools, storage and temp space; nothing else is passed on, so
# no credential of the worker's can reach the engine (and from there a container).
_SERVICE_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMPDIR",
                     "LANG", "LC_ALL")


class EndpointUnavailable(Exception):
    """No Docker-API endpoint answers and none could be started; the message says why (one line)."""


def podman_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a podman process we start: a few host basics plus CONTAINERS_CONF=<our file>."""
    src = os.environ if environ is None else environ
    env = {k: src[k] for k in _SERVICE_ENV_KEYS if k in src}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def socket_path(base_url: str) -> str | None:
    """'unix:///run/x.sock' -> '/run/x.sock'; None for tcp:// and others."""
    for prefix in ("unix://", "http+unix://"):
        if base_url.startswith(prefix):
            return base_url[len(prefix):]
    return None


def pings(base_url: str, timeout: float = 1.0) -> bool:
    """True when a Docker-compatible engine answers GET /_ping with 200 (a raw request: no client to build)."""
    path = socket_path(base_url)
    if path is None:
        return _tcp_pings(base_url, timeout)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return s.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


def _tcp_pings(base_url: str, timeout: float) -> bool:
    import docker  # only for tcp:// endpoints, which need docker-py's TLS handling anyway

    try:
        client = docker.DockerClient(base_url=base_url, timeout=max(1, int(timeout)))
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # any transport failure means "does not answer"
        return False
    finally:
        client.close()


def candidate_urls(sandbox: WorkerSandbox, environ: Mapping[str, str]) -> list[str]:
    """The endpoints to try, most specific first (duplicates removed)."""
    urls: list[str] = []
    if sandbox.docker_host:
        urls.append(sandbox.docker_host)
    if environ.get("DOCKER_HOST"):
        urls.append(environ["DOCKER_HOST"])
    if environ.get("XDG_RUNTIME_DIR"):
        urls.append(f"unix://{environ['XDG_RUNTIME_DIR']}/podman/podman.sock")
    urls.append(f"unix://{SYSTEM_SOCKET}")
    return list(dict.fromkeys(urls))


class DockerEndpoint:
    """Finds (or starts) the engine endpoint; `start()` returns the base_url for docker-py, `stop()` ends our child."""

    def __init__(self, sandbox: WorkerSandbox, state_dir: Path, *, environ: Mapping[str, str] | None = None,
                 ready_timeout_s: float = 30.0) -> None:
        self.sandbox = sandbox
        self.state_dir = Path(state_dir)
        self.environ = dict(os.environ if environ is None else environ)
        self.ready_timeout_s = ready_timeout_s
        self.base_url: str | None = None
        self.started_service = False
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def own_socket(self) -> Path:
        return self.state_dir / "podman" / "podman.sock"

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "podman" / "service.pid"

    async def start(self) -> str:
        return await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    async def revive(self) -> bool:
        """Start the podman service this node started again, at the same socket, if it has exited; True when it did.
        A service that is alive but slow is left alone (its running jobs depend on it), and so is an engine the node
        only uses (Docker, a system Podman)."""
        return await asyncio.to_thread(self.revive_sync)

    def revive_sync(self) -> bool:
        if not self.started_service or self._service_alive():
            return False
        self._proc = None
        log_file = self.own_socket.parent / "service.log"
        with contextlib.suppress(OSError):  # keep the stopped service's log for whoever looks into why
            log_file.replace(log_file.with_suffix(".log.1"))
        try:
            self._start_service()
        except EndpointUnavailable as e:
            log.error("sandbox runtime: could not restart the podman service: %s", e)
            self.started_service = True  # still ours to start: the next runtime check tries again
            return False
        return True

    def start_sync(self) -> str:
        tried = candidate_urls(self.sandbox, self.environ)
        for url in tried:
            if pings(url):
                log.info("sandbox runtime: using the engine at %s", url)
                self.base_url = url
                return url
        own = f"unix://{self.own_socket}"
        if pings(own):  # our service from a previous run that did not stop it (crash): adopt it, stop it later
            log.info("sandbox runtime: adopting the podman service already at %s", own)
            self.base_url, self.started_service = own, True
            return own
        if not self.sandbox.start_podman_service or self.sandbox.runtime != "podman":
            raise EndpointUnavailable(f"no container engine answers at {', '.join(tried)}")
        self.base_url = self._start_service()
        self.started_service = True
        return self.base_url

    def _start_service(self) -> str:
        podman = shutil.which("podman", path=self.environ.get("PATH"))
        if podman is None:
            raise EndpointUnavailable("no container engine answers and podman is not installed")
        sock = self.own_socket
        if len(str(sock).encode()) > MAX_SOCKET_PATH:
            raise EndpointUnavailable(f"podman socket path is longer than {MAX_SOCKET_PATH} bytes: {sock}")
        sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock.unlink(missing_ok=True)  # a stale socket file from a dead service would make the bind fail
        url = f"unix://{sock}"
        log_file = sock.parent / "service.log"
        with open(log_file, "wb") as out:  # this run's log only
            self._proc = subprocess.Popen(
                [podman, "system", "service", "--time=0", url],
                env=podman_env(self.environ), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.own_socket.parent,  # conmon drops files (e.g. `oom`) into its working directory
                start_new_session=True,  # a Ctrl-C meant for the worker must not kill the engine under running jobs
            )
        self._pid_file.write_text(str(self._proc.pid))
        deadline = time.monotonic() + self.ready_timeout_s
        while not pings(url, timeout=0.5):
            if self._proc.poll() is not None:
                raise EndpointUnavailable(f"podman system service exited with {self._proc.returncode} (see {log_file})")
            if time.monotonic() > deadline:
                self.stop_sync()
                raise EndpointUnavailable(f"podman system service did not answer within {self.ready_timeout_s:.0f} s")
            time.sleep(0.05)
        log.info("sandbox runtime: started podman system service at %s (pid %d)", url, self._proc.pid)
        return url

    def _service_alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        try:  # adopted from an earlier run: the pid file's process, if it is still that service
            pid = int(self._pid_file.read_text())
            return str(self.own_socket).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False

    def stop_sync(self, timeout: float = 10.0) -> None:
        """Stop the service only if this node started (or adopted) it; an engine we merely used is left alone."""
        if not self.started_service and self._proc is None:
            return
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        else:
            self._stop_adopted()
        self._proc = None
        self.started_service = False
        self._pid_file.unlink(missing_ok=True)
        self.own_socket.unlink(missing_ok=True)

    def _stop_adopted(self) -> None:
        """SIGTERM the service a previous run left behind, if its pid file still names a podman process."""
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"podman" in cmdline and str(self.own_socket).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

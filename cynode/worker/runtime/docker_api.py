"""SandboxRuntime over the Docker API (docker-py), against Podman's compatible service or a Docker engine.

One job = one blocking flow on a thread of the runtime's own pool (docker-py is blocking; a job holds its thread for
its whole run, so jobs get their own pool rather than starving asyncio's default executor):
image present? -> job dirs -> [shim container, wait for its health URL] -> create the job container -> attach its
output -> start -> wait for the end of the output stream, the timeout, or a cancel -> exit state -> remove the
containers and dirs (on every path).  The rules themselves (user, mounts, limits...) live in options.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import requests
from docker.utils import parse_repository_tag

from cynode.config import Settings, WorkerSandbox
from cynode.contracts.sandbox import RuntimeCheck, SandboxOutcome, SandboxRequest
from cynode.contracts.workerapi import JobError, Truncated
from cynode.worker.output import BoundedCapture
from cynode.worker.runtime import EngineUnreachable, cgroup, options
from cynode.worker.runtime.attach import AttachReader, StreamDemux
from cynode.worker.runtime.jobdirs import JobDirFactory, JobDirs, UnsafePath, check_job_id

log = logging.getLogger(__name__)

# requests' errors are OSErrors too; a bare OSError from the engine's socket is an engine error as well.
_ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError)
_EXIT_POLL_S = 10.0  # how long an exited container may take to show up as not running


class _Failure(Exception):
    """Ends a job early with a node-side error (nothing ran, or the job could not be run as asked)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Control:
    """What the event loop can tell a job's thread: stop now (cancel). `wake` also fires when the output ends."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.wake.set()


def failed(kind: str, message: str, *, stdout: str = "", stderr: str = "",
           truncated: Truncated | None = None) -> SandboxOutcome:
    return SandboxOutcome(status="failed", exit_code=-1, stdout=stdout, stderr=stderr,
                          truncated=truncated or Truncated(), error=JobError(kind, message))


class DockerApiRuntime:
    """The sandbox runtime (worker.md §6). `kill_grace_s`: SIGTERM -> SIGKILL on timeout/cancel (10 s per spec)."""

    def __init__(self, base_url: str, *, node_slug: str, sandbox: WorkerSandbox, mount_root: Path,
                 kill_grace_s: float = 10.0, shim_ready_timeout_s: float = 10.0, api_timeout_s: float = 60.0) -> None:
        self.base_url = base_url
        self.node_slug = node_slug
        self.sandbox = sandbox
        self.confinement = options.Confinement.from_settings(sandbox)
        uid, gid = self.confinement.ids()
        self.dirs = JobDirFactory(Path(mount_root), uid, gid)
        self.kill_grace_s = kill_grace_s
        self.shim_ready_timeout_s = shim_ready_timeout_s
        self.api_timeout_s = api_timeout_s
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._jobs: dict[str, _Control] = {}
        # Each job holds a thread for its whole run; +2 for the runtime check and cleanup next to a full node.
        self._pool = ThreadPoolExecutor(max_workers=sandbox.max_concurrency + 2, thread_name_prefix="sandbox-job")

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str, node_slug: str, **kwargs: Any) -> DockerApiRuntime:
        sandbox = settings.worker.sandbox
        mount_root = (Path(sandbox.mount_root).expanduser() if sandbox.mount_root
                      else settings.worker_state_path / "sandbox_mounts")
        return cls(base_url, node_slug=node_slug, sandbox=sandbox, mount_root=mount_root, **kwargs)

    # ---- the SandboxRuntime protocol -------------------------------------------------------------------------

    async def run(self, req: SandboxRequest) -> SandboxOutcome:
        if req.job_id in self._jobs:
            return failed("runtime_error", "a job with this id is already running on this node")
        control = _Control()
        self._jobs[req.job_id] = control
        fut = asyncio.get_running_loop().run_in_executor(self._pool, self._run_sync, req, control)
        fut.add_done_callback(lambda _: self._jobs.pop(req.job_id, None))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            control.stop("canceled")  # the job's thread stops the container and cleans up on its own
            raise

    async def cancel(self, job_id: str) -> bool:
        control = self._jobs.get(job_id)
        if control is None:
            return False
        control.stop("canceled")
        return True

    async def check(self) -> RuntimeCheck:
        return await asyncio.to_thread(self._check_sync)

    async def cleanup_leftovers(self) -> None:
        await asyncio.to_thread(self._cleanup_sync)

    async def close(self) -> None:
        for control in list(self._jobs.values()):
            control.stop("canceled")
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ---- engine plumbing ------------------------------------------------------------------------------------

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                self._client = docker.APIClient(base_url=self.base_url, version="auto", timeout=self.api_timeout_s,
                                                max_pool_size=2 * self.sandbox.max_concurrency + 4)
            return self._client

    def _engine_message(self, e: BaseException) -> str:
        """One line for the job result: the engine's explanation, without the node's host paths."""
        text = getattr(e, "explanation", None) or str(e) or type(e).__name__
        text = str(text).replace(str(self.dirs.mount_root), "<mount_root>").splitlines()[0]
        return text[:300]

    def _ensure_image(self, api: docker.APIClient, image: str) -> None:
        try:
            api.inspect_image(image)
            return
        except docker.errors.ImageNotFound:
            pass
        if self.sandbox.pull != "missing":
            raise _Failure("image_unavailable", f"image {image} is not present on this node and sandbox.pull=never")
        repo, tag = parse_repository_tag(image)
        try:
            api.pull(repo, tag=tag or "latest")
            api.inspect_image(image)
        except _ENGINE_ERRORS as e:
            raise _Failure("image_unavailable", f"pulling image {image} failed: {self._engine_message(e)}") from None

    def _remove(self, api: docker.APIClient, container_id: str) -> None:
        for attempt in (1, 2):
            try:
                api.remove_container(container_id, force=True)
                return
            except docker.errors.NotFound:
                return
            except _ENGINE_ERRORS as e:
                if attempt == 2:
                    log.warning("sandbox: could not remove container %s: %s", container_id[:12],
                                self._engine_message(e))
                time.sleep(0.2)

    # ---- one job --------------------------------------------------------------------------------------------

    def _run_sync(self, req: SandboxRequest, control: _Control) -> SandboxOutcome:
        created: list[str] = []  # removal order: the job before the shim whose network namespace it uses
        dirs_made = False
        try:
            check_job_id(req.job_id)
            api = self._api()
            self._ensure_image(api, req.image)
            if req.shim is not None:
                self._ensure_image(api, req.shim.image)
            dirs = self._make_dirs(req)
            dirs_made = True
            network = "none"
            if req.shim is not None:
                shim_id = self._start_shim(api, req, created)
                network = f"container:{shim_id}"
            if control.stop_reason is not None:  # canceled while the image or the shim was being prepared
                raise _Failure(control.stop_reason, "the job was canceled before it started")
            hc = api.create_host_config(**options.host_config(
                self.confinement, mounts=options.job_mounts(dirs, req.run_dir), network_mode=network))
            cid = api.create_container(host_config=hc, **options.job_container(req, self.confinement,
                                                                                self.node_slug))["Id"]
            created.insert(0, cid)
            return self._execute(api, cid, req, control)
        except _Failure as f:
            return failed(f.kind, str(f))
        except UnsafePath as e:
            return failed("runtime_error", str(e))
        except docker.errors.ImageNotFound as e:
            return failed("image_unavailable", self._engine_message(e))
        except _ENGINE_ERRORS as e:
            if not created and isinstance(e, requests.ConnectionError):  # the engine is gone; nothing started
                raise EngineUnreachable(self._engine_message(e)) from None
            return failed("runtime_error", f"container engine error: {self._engine_message(e)}")
        finally:
            if created:
                api = self._api()
                for container_id in created:
                    self._remove(api, container_id)
            if dirs_made:
                self.dirs.remove(req.job_id)

    def _make_dirs(self, req: SandboxRequest) -> JobDirs:
        try:
            return self.dirs.create(req.job_id, req.input_files)
        except FileExistsError:
            raise _Failure("runtime_error", "the job's directory already exists on this node") from None
        except OSError as e:  # e.g. not root, so the dirs cannot be given to the sandbox uid
            raise _Failure("runtime_error", f"cannot prepare the job's directories: {e.strerror}") from None

    def _start_shim(self, api: docker.APIClient, req: SandboxRequest, created: list[str]) -> str:
        """The loopback inference shim (worker.md §7.3): network-less, the job's socket dir, healthy within 10 s."""
        assert req.shim is not None
        if not req.run_dir:
            raise _Failure("inference_unavailable", "the inference shim needs the job's run dir (inference socket)")
        hc = api.create_host_config(**options.host_config(
            self.confinement, mounts=[docker.types.Mount(options.RUN_DIR_TARGET, req.run_dir, type="bind")],
            network_mode="none"))
        shim_id: str = api.create_container(host_config=hc, **options.shim_container(req, self.confinement,
                                                                                    self.node_slug))["Id"]
        created.append(shim_id)
        api.start(shim_id)
        # The health URL is only reachable inside the shim's network namespace, so a short-lived probe container
        # joins it. (Not `exec`: Podman keeps a conmon per exec session alive for 5 minutes after it ends.)
        hc = api.create_host_config(**options.host_config(self.confinement, mounts=[],
                                                          network_mode=f"container:{shim_id}"))
        probe_id: str = api.create_container(host_config=hc, **options.probe_container(
            req, self.confinement, self.node_slug, self.shim_ready_timeout_s))["Id"]
        created.insert(0, probe_id)  # removed before the shim whose namespace it uses
        try:
            api.start(probe_id)
        except docker.errors.APIError as e:  # the shim died at once (e.g. its command does not exist)
            raise _Failure("inference_unavailable", f"inference shim failed: {self._engine_message(e)}") from None
        state = self._exit_state(api, probe_id, self.shim_ready_timeout_s + 10)
        if state.get("Running") or state.get("ExitCode") != 0:
            raise _Failure("inference_unavailable",
                           f"inference shim did not answer {req.shim.healthcheck_url} within "
                           f"{self.shim_ready_timeout_s:g} s")
        return shim_id

    def _execute(self, api: docker.APIClient, cid: str, req: SandboxRequest, control: _Control) -> SandboxOutcome:
        out = BoundedCapture(self.sandbox.max_stdout_bytes)
        err = BoundedCapture(self.sandbox.max_stderr_bytes)
        # Attached before start: the stream carries everything from the first byte and ends when the job exits.
        reader = AttachReader(api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1}),
                              StreamDemux(out, err), control.wake)
        reader.start()
        try:
            api.start(cid)
        except BaseException:
            reader.abort()
            raise
        deadline = time.monotonic() + req.timeout_s
        ended = "exited"
        while not reader.done.is_set():
            if control.stop_reason is not None:
                ended = control.stop_reason
                break
            if time.monotonic() >= deadline:
                ended = "timeout"
                break
            control.wake.wait(deadline - time.monotonic())
        if ended != "exited":
            # SIGTERM, then SIGKILL after the grace (the engine does both); the output stream then ends.
            self._stop(api, cid)
        reader.join(self.kill_grace_s + 10)
        if reader.is_alive():
            reader.abort()
            reader.join(5)
        (stdout, t_out), (stderr, t_err) = out.result(), err.result()
        truncated = Truncated(stdout=t_out, stderr=t_err)
        if ended == "timeout":
            return SandboxOutcome(status="timeout", exit_code=-1, stdout=stdout, stderr=stderr, truncated=truncated)
        if ended != "exited":
            return failed("canceled", "the job was canceled", stdout=stdout, stderr=stderr, truncated=truncated)
        state = self._exit_state(api, cid)
        code = int(state.get("ExitCode", -1))
        if state.get("OOMKilled") or (code == 137 and cgroup.oom_kills(cid) > 0):
            return SandboxOutcome(status="failed", exit_code=137, stdout=stdout, stderr=stderr, truncated=truncated,
                                  error=JobError("oom_killed", "the job was killed for exceeding its memory limit"))
        return SandboxOutcome(status="completed" if code == 0 else "failed", exit_code=code, stdout=stdout,
                              stderr=stderr, truncated=truncated)

    def _stop(self, api: docker.APIClient, cid: str) -> None:
        try:
            api.stop(cid, timeout=math.ceil(self.kill_grace_s))
        except docker.errors.NotFound:
            pass
        except _ENGINE_ERRORS as e:
            log.warning("sandbox: stop of %s failed (%s); killing it", cid[:12], self._engine_message(e))
            with contextlib.suppress(*_ENGINE_ERRORS):  # removal (force) follows in any case
                api.kill(cid)

    def _exit_state(self, api: docker.APIClient, cid: str, within_s: float = _EXIT_POLL_S) -> dict[str, Any]:
        """The container's final State (still running after `within_s`: its current one). Polling inspect because
        Podman's /wait answers only ~0.25-0.4 s after the exit."""
        deadline = time.monotonic() + within_s
        delay = 0.002
        while True:
            state: dict[str, Any] = api.inspect_container(cid)["State"]
            if not state.get("Running") or time.monotonic() > deadline:
                return state
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # ---- startup ---------------------------------------------------------------------------------------------

    def _check_sync(self) -> RuntimeCheck:
        try:
            api = self._api()
            runtime, version = _engine_identity(api.version())
            rootless = any("rootless" in str(opt) for opt in api.info().get("SecurityOptions") or [])
        except _ENGINE_ERRORS as e:
            return RuntimeCheck(False, self.sandbox.runtime, detail=f"engine unreachable: {self._engine_message(e)}")
        req = SandboxRequest(task_id="runtime-check", job_id=f"check-{uuid.uuid4().hex[:12]}",
                             image=self.sandbox.default_image, command=["true"], timeout_s=60)
        outcome = self._run_sync(req, _Control())
        if outcome.status == "completed":
            return RuntimeCheck(True, runtime, version, rootless=rootless)
        if outcome.error is not None:
            detail = f"{outcome.error.type}: {outcome.error.message}"
        else:
            detail = f"`true` exited with {outcome.exit_code}: {outcome.stderr.strip()[:200]}"
        return RuntimeCheck(False, runtime, version, detail=detail, rootless=rootless)

    def _cleanup_sync(self) -> int:
        """Returns how many containers and dirs were removed (logged; handy in tests)."""
        api = self._api()
        found = api.containers(all=True, filters={"label": [f"cynodeai.node_slug={self.node_slug}"]})
        ours = [c for c in found if (c.get("Labels") or {}).get("cynodeai.kind") == "sandbox"
                and (c.get("Labels") or {}).get("cynodeai.job_id") not in self._jobs]
        ours.sort(key=lambda c: (c.get("Labels") or {}).get("cynodeai.part") == "shim")  # jobs before their shims
        for c in ours:
            self._remove(api, c["Id"])
        stale = [job_id for job_id in self.dirs.leftovers() if job_id not in self._jobs]
        for job_id in stale:
            self.dirs.remove(job_id)
        if ours or stale:
            log.info("sandbox: removed %d leftover containers and %d job dirs", len(ours), len(stale))
        return len(ours) + len(stale)


def _engine_identity(version: dict[str, Any]) -> tuple[str, str]:
    """('podman', '4.3.1') or ('docker', '26.1.0') from GET /version."""
    for comp in version.get("Components") or []:
        if "podman" in str(comp.get("Name", "")).lower():
            return "podman", str(comp.get("Version", ""))
    return "docker", str(version.get("Version", ""))

"""The sandbox runtime against a real Podman (Docker API): what a job can and cannot do, and what comes back.

Every test runs with its own node slug and mount root; the `runtime` fixture fails the test if a container or a job
directory is left behind, so every path below (errors, timeouts, cancels) is also a cleanup test.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from aiohttp import web

from cynode.config import WorkerResources, WorkerSandbox
from cynode.contracts.sandbox import SandboxRequest, ShimSpec
from cynode.worker import image as sandbox_image
from cynode.worker.podman import DockerEndpoint, EndpointUnavailable
from cynode.worker.runtime.docker_api import DockerApiRuntime

pytestmark = pytest.mark.podman

IMAGE = "localhost/cynode-sandbox:0.1"
UDS_URL = "http+unix://%2Frun%2Fcynode%2Finference-proxy.sock"


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker-API endpoint (an existing one, else our own podman service) with the sandbox image present."""
    endpoint = DockerEndpoint(WorkerSandbox(), tmp_path_factory.mktemp("worker-state"))
    try:
        url = endpoint.start_sync()
    except EndpointUnavailable as e:
        pytest.skip(f"no container runtime can be made available: {e}")
    try:
        try:
            sandbox_image.ensure(IMAGE)
        except sandbox_image.BuildError as e:
            pytest.skip(f"the sandbox image {IMAGE} cannot be built here: {e}")
        yield url
    finally:
        endpoint.stop_sync()


def make_runtime(url: str, tmp: Path, *, resources: WorkerResources | None = None, **kw: Any) -> DockerApiRuntime:
    sandbox_kw = {k: kw.pop(k) for k in list(kw) if k in WorkerSandbox.__struct_fields__}
    sandbox = WorkerSandbox(resources=resources or WorkerResources(), **sandbox_kw)
    kw.setdefault("kill_grace_s", 1.0)
    return DockerApiRuntime(url, node_slug=f"pytest-{uuid.uuid4().hex[:8]}", sandbox=sandbox,
                            mount_root=tmp / "mounts", **kw)


def leftovers(url: str, rt: DockerApiRuntime) -> tuple[list[str], list[str]]:
    api = docker.APIClient(base_url=url)
    try:
        found = api.containers(all=True, filters={"label": [f"cynodeai.node_slug={rt.node_slug}"]})
    finally:
        api.close()
    root = rt.dirs.mount_root
    return [c["Names"][0] for c in found], (sorted(os.listdir(root)) if root.exists() else [])


@pytest.fixture
async def runtime_factory(engine_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[DockerApiRuntime] = []

    def factory(**kw: Any) -> DockerApiRuntime:
        rt = make_runtime(engine_url, tmp_path / str(len(made)), **kw)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        await rt.close()
        assert leftovers(engine_url, rt) == ([], []), "a container or job dir was left behind"


@pytest.fixture
def runtime(runtime_factory: Any) -> DockerApiRuntime:
    return runtime_factory()


def job(command: list[str], **kw: Any) -> SandboxRequest:
    kw.setdefault("timeout_s", 30)
    return SandboxRequest(task_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()), image=kw.pop("image", IMAGE),
                          command=command, **kw)


async def test_stdout_and_stderr_come_back_separately_with_the_exit_code(runtime: DockerApiRuntime) -> None:
    o = await runtime.run(job(["sh", "-c", "echo to-out; echo to-err >&2; echo more-out; exit 3"]))
    assert (o.status, o.exit_code, o.stdout, o.stderr, o.error) == ("failed", 3, "to-out\nmore-out\n", "to-err\n", None)
    o = await runtime.run(job(["sh", "-c", "printf done"]))
    assert (o.status, o.exit_code, o.stdout, o.stderr) == ("completed", 0, "done", "")


async def test_output_printed_up_to_the_exit_is_all_there(runtime: DockerApiRuntime) -> None:
    o = await runtime.run(job(["sh", "-c", "seq 1 20000; echo last >&2"]))
    assert o.stdout == "".join(f"{i}\n" for i in range(1, 20001))
    assert o.stderr == "last\n"
    assert o.truncated.stdout is False


async def test_the_job_runs_as_nobody_without_capabilities(runtime: DockerApiRuntime) -> None:
    o = await runtime.run(job(["sh", "-c", "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"]))
    assert o.stdout.split() == ["65534", "65534", "CapEff:", "0000000000000000", "CapBnd:", "0000000000000000",
                                "NoNewPrivs:", "1"]


async def test_the_job_has_no_network(runtime: DockerApiRuntime) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)  # a host service the job must miss
    port = server.sockets[0].getsockname()[1]
    probe = f"""
import os, socket
print(sorted(os.listdir('/sys/class/net')))
for host, port in (('127.0.0.1', {port}), ('1.1.1.1', 53), ('10.0.2.2', 80)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        print('connected', host)
    except OSError:
        print('no route', host)
try:
    socket.getaddrinfo('deb.debian.org', 80)
    print('dns works')
except OSError:
    print('no dns')
"""
    try:
        o = await runtime.run(job(["python3", "-c", probe]))
    finally:
        server.close()
    assert o.stdout.splitlines() == ["['lo']", "no route 127.0.0.1", "no route 1.1.1.1", "no route 10.0.2.2", "no dns"]


async def test_root_fs_is_read_only_while_tmp_workspace_and_job_are_writable(runtime: DockerApiRuntime) -> None:
    script = ("for p in /etc/x /usr/x /x /tmp/x /workspace/x /job/artifacts/x /job/result.json; do "
              "if (echo hi > $p) 2>/dev/null; then echo $p rw; else echo $p ro; fi; done; "
              "stat -c %a /tmp; pwd; echo $HOME")
    o = await runtime.run(job(["sh", "-c", script]))
    assert o.stdout.splitlines() == ["/etc/x ro", "/usr/x ro", "/x ro", "/tmp/x rw", "/workspace/x rw",
                                     "/job/artifacts/x rw", "/job/result.json rw", "1777", "/workspace", "/tmp"]


async def test_input_files_are_readable_but_not_writable(runtime: DockerApiRuntime) -> None:
    blob = bytes(range(256)) * 64
    script = ("cat /job/inputs/prompt.txt; echo; stat -c %a /job/inputs/prompt.txt; cksum < /job/inputs/data.bin; "
              "(echo x >> /job/inputs/prompt.txt) 2>/dev/null && echo WROTE; "
              "touch /job/inputs/new 2>/dev/null && echo CREATED; "
              "chmod 666 /job/inputs/prompt.txt 2>/dev/null && echo CHMODDED; "
              "rm -f /job/inputs/prompt.txt 2>/dev/null && echo REMOVED; cat /job/inputs/prompt.txt")
    o = await runtime.run(job(["sh", "-c", script], input_files={"prompt.txt": b"hello", "data.bin": blob}))
    import subprocess

    expected_cksum = subprocess.run(["cksum"], input=blob, capture_output=True, check=True).stdout.decode().strip()
    assert o.stdout.splitlines() == ["hello", "444", expected_cksum, "hello"]
    assert o.status == "completed"


async def test_unsafe_names_are_refused_before_anything_runs(runtime: DockerApiRuntime) -> None:
    for name in ("../escape", "..", "a/b", ""):
        o = await runtime.run(job(["true"], input_files={name: b"x"}))
        assert (o.status, o.exit_code, o.error and o.error.type) == ("failed", -1, "runtime_error")
    o = await runtime.run(SandboxRequest(task_id="t", job_id="../../etc", image=IMAGE, command=["true"], timeout_s=5))
    assert o.error is not None and o.error.type == "runtime_error"


async def test_resource_limits_are_applied(runtime_factory: Any) -> None:
    rt = runtime_factory(resources=WorkerResources(max_cpu_cores=0.5, max_memory_mb=96, max_pids=32))
    script = r"""
import glob, re
def first(*patterns):
    for p in patterns:
        for f in glob.glob(p):
            return open(f).read().split()
print('pids', first('/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max')[0])
print('mem', first('/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max')[0])
cpu = first('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu.max')
period = first('/sys/fs/cgroup/cpu/cpu.cfs_period_us') or cpu[1:]
print('cpu', int(cpu[0]) / int(period[0]))
for line in open('/proc/self/limits'):
    if re.match('Max (open files|processes|core file size)', line):
        print(' '.join(line.split()[-3:-1]))
"""
    o = await rt.run(job(["python3", "-c", script]))
    assert o.stdout.splitlines() == ["pids 32", f"mem {96 * 2**20}", "cpu 0.5", "0 0", "1024 1024", "1024 1024"]
    # and by behaviour: 60 background processes cannot all start under a pids limit of 32
    o = await rt.run(job(["sh", "-c", "n=0; for i in $(seq 60); do sleep 3 & n=$((n+1)); done 2>/dev/null; "
                                      "echo started $(jobs -p | wc -l)"]))
    started = int(o.stdout.split()[-1]) if o.stdout else 0
    assert started < 32, o


async def test_a_memory_hog_is_oom_killed(runtime_factory: Any) -> None:
    rt = runtime_factory(resources=WorkerResources(max_memory_mb=64))
    o = await rt.run(job(["python3", "-c", "b = bytearray(512 * 2**20); print('survived')"]))
    assert (o.status, o.exit_code, o.error and o.error.type, o.stdout) == ("failed", 137, "oom_killed", "")


async def test_timeout_kills_the_job_and_returns_the_output_so_far(runtime: DockerApiRuntime) -> None:
    t0 = time.monotonic()
    # The job ignores SIGTERM, so only the SIGKILL after the grace (1 s here) ends it.
    o = await runtime.run(job(["sh", "-c", "echo started; echo warn >&2; trap '' TERM; sleep 60"], timeout_s=2))
    elapsed = time.monotonic() - t0
    assert (o.status, o.exit_code, o.stdout, o.stderr, o.error) == ("timeout", -1, "started\n", "warn\n", None)
    assert 2 <= elapsed < 8


async def test_cancel_stops_a_running_job(runtime: DockerApiRuntime) -> None:
    req = job(["sh", "-c", "echo up; sleep 60"], timeout_s=60)
    task = asyncio.create_task(runtime.run(req))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    assert await runtime.cancel(req.job_id) is True
    o = await task
    assert (o.status, o.exit_code, o.error and o.error.type) == ("failed", -1, "canceled")
    assert time.monotonic() - t0 < 5
    assert await runtime.cancel(req.job_id) is False


async def test_output_over_the_limit_is_truncated_at_a_character_boundary(runtime_factory: Any) -> None:
    rt = runtime_factory(max_stdout_bytes=1000, max_stderr_bytes=1000)
    o = await rt.run(job(["python3", "-c", "import sys; sys.stdout.write('é' * 600); sys.stderr.write('x' * 1000)"]))
    assert (o.stdout, o.truncated.stdout) == ("é" * 500, True)
    assert (o.stderr, o.truncated.stderr) == ("x" * 1000, False)  # exactly at the limit: whole
    o = await rt.run(job(["sh", "-c", "head -c 30000000 /dev/zero | tr '\\0' a; echo done >&2"]))
    assert (o.stdout, o.truncated.stdout, o.stderr, o.status) == ("a" * 1000, True, "done\n", "completed")


async def test_the_job_sees_only_the_env_it_was_given(runtime: DockerApiRuntime, monkeypatch: Any) -> None:
    monkeypatch.setenv("CYNODE_WORKER_SECRET_PROBE", "must-not-leak")
    o = await runtime.run(job(["env"], env={"JOB_VAR": "1", "CYNODE_TASK_ID": "t-1"}))
    env = dict(line.split("=", 1) for line in o.stdout.splitlines())
    assert env["JOB_VAR"] == "1" and env["CYNODE_TASK_ID"] == "t-1" and env["HOME"] == "/tmp"
    # Only what the image and the engine always set (PATH, LANG; HOSTNAME, TERM, container) besides the request's.
    assert set(env) - {"JOB_VAR", "CYNODE_TASK_ID", "HOME"} <= {"PATH", "LANG", "HOSTNAME", "TERM", "container"}


async def test_a_missing_image_fails_without_running_anything(runtime: DockerApiRuntime) -> None:
    o = await runtime.run(job(["true"], image="localhost/cynode-no-such-image:0"))
    assert (o.status, o.exit_code, o.error and o.error.type) == ("failed", -1, "image_unavailable")


async def test_concurrent_jobs_keep_their_own_output(runtime: DockerApiRuntime) -> None:
    outs = await asyncio.gather(*(runtime.run(job(["sh", "-c", f"echo job-{i}; echo err-{i} >&2; exit {i}"]))
                                  for i in range(4)))
    assert [(o.stdout, o.stderr, o.exit_code) for o in outs] == [(f"job-{i}\n", f"err-{i}\n", i) for i in range(4)]


# ---- inference through the job's socket and the loopback shim (worker.md §7.3) -----------------------------------


@pytest.fixture
async def proxy_socket(tmp_path: Path) -> AsyncIterator[Path]:
    """A stand-in for the worker's inference proxy: an aiohttp app on the job's run dir socket."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    sock = run_dir / "inference-proxy.sock"

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "tiny"}], "host": request.host})

    async def generate(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"model": body["model"], "response": f"echo: {body['prompt']}", "done": True})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/api/tags", tags), web.post("/api/generate", generate)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    for path, mode in ((run_dir, 0o700), (sock, 0o600)):  # only the sandbox's uid may use them (worker.md §5.9)
        os.chown(path, 65534, 65534)
        os.chmod(path, mode)
    try:
        yield run_dir
    finally:
        await runner.cleanup()


async def test_inference_reaches_the_host_socket_directly_and_through_the_shim(
        runtime: DockerApiRuntime, proxy_socket: Path) -> None:
    script = ("curl -sS http://localhost:11434/api/tags; echo; "
              "curl -sS --unix-socket /run/cynode/inference-proxy.sock http://proxy/api/tags; echo; "
              "cynode-model-call; env -u INFERENCE_PROXY_URL cynode-model-call; ls /sys/class/net")
    env = {"INFERENCE_PROXY_URL": UDS_URL, "OLLAMA_BASE_URL": "http://localhost:11434", "CYNODE_MODEL": "tiny",
           "CYNODE_PROMPT": "hi there"}
    o = await runtime.run(job(["sh", "-c", script], env=env, run_dir=str(proxy_socket),
                              shim=ShimSpec(image=IMAGE, command=["cynode-inference-shim"])))
    assert o.stdout.splitlines() == ['{"models": [{"name": "tiny"}], "host": "localhost:11434"}',
                                     '{"models": [{"name": "tiny"}], "host": "proxy"}',
                                     "echo: hi there", "echo: hi there", "lo"], o
    assert o.status == "completed"


async def test_model_call_reads_the_prompt_file_without_a_shim(runtime: DockerApiRuntime, proxy_socket: Path) -> None:
    o = await runtime.run(job(["cynode-model-call"], env={"INFERENCE_PROXY_URL": UDS_URL, "CYNODE_MODEL": "tiny"},
                              run_dir=str(proxy_socket), input_files={"prompt.txt": "é from a file".encode()}))
    assert (o.status, o.stdout) == ("completed", "echo: é from a file\n")
    o = await runtime.run(job(["cynode-model-call"], env={"CYNODE_MODEL": "tiny", "CYNODE_PROMPT": "x"}))
    assert (o.status, o.exit_code) == ("failed", 1)
    assert o.stderr.startswith("cynode-model-call: no inference endpoint")


async def test_a_shim_that_never_answers_fails_the_job_as_inference_unavailable(
        runtime_factory: Any, tmp_path: Path) -> None:
    rt = runtime_factory(shim_ready_timeout_s=1.0)
    run_dir = tmp_path / "empty-run"
    run_dir.mkdir()  # no proxy socket in it: the shim has nothing to forward to
    o = await rt.run(job(["true"], run_dir=str(run_dir),
                         shim=ShimSpec(image=IMAGE, command=["cynode-inference-shim"])))
    assert (o.status, o.exit_code, o.error and o.error.type) == ("failed", -1, "inference_unavailable")


# ---- startup: the runtime check and leftovers -------------------------------------------------------------------


async def test_check_runs_true_with_every_sandbox_option(runtime: DockerApiRuntime) -> None:
    check = await runtime.check()
    assert check.ok, check.detail
    assert check.runtime in ("podman", "docker") and check.version


async def test_check_reports_a_missing_default_image(runtime_factory: Any) -> None:
    rt = runtime_factory(default_image="localhost/cynode-no-such-image:0")
    check = await rt.check()
    assert not check.ok and check.detail.startswith("image_unavailable:")


async def test_cleanup_removes_this_nodes_leftovers_only(engine_url: str, runtime: DockerApiRuntime) -> None:
    api = docker.APIClient(base_url=engine_url)
    other = None
    try:
        def create(slug: str, part: str, **host: Any) -> str:
            labels = {"cynodeai.node_slug": slug, "cynodeai.kind": "sandbox", "cynodeai.part": part,
                      "cynodeai.job_id": str(uuid.uuid4())}
            return str(api.create_container(IMAGE, ["true"], labels=labels,
                                            host_config=api.create_host_config(**host))["Id"])

        shim = create(runtime.node_slug, "shim", network_mode="none")
        create(runtime.node_slug, "job", network_mode=f"container:{shim}")  # must go before its shim
        other = create("some-other-node", "job", network_mode="none")
        stale = runtime.dirs.mount_root / str(uuid.uuid4())
        (stale / "workspace").mkdir(parents=True)

        names, dirs = leftovers(engine_url, runtime)
        assert (len(names), dirs) == (2, [stale.name])
        await runtime.cleanup_leftovers()
        assert leftovers(engine_url, runtime) == ([], [])
        assert api.inspect_container(other)["State"]["Status"] in ("created", "configured")
    finally:
        if other:
            api.remove_container(other, force=True)
        api.close()

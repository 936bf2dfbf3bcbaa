"""Sandbox runtime pieces that need no container engine: stream demux, job dirs, endpoint resolution, allowlist."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cynode.config import WorkerSandbox
from cynode.worker.output import BoundedCapture
from cynode.worker.podman import DockerEndpoint, EndpointUnavailable, candidate_urls, pings, podman_env
from cynode.worker.runtime import image_allowed
from cynode.worker.runtime.attach import StreamDemux
from cynode.worker.runtime.jobdirs import JobDirFactory, UnsafePath
from cynode.worker.runtime.options import Confinement


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=12),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_demux_keeps_stdout_and_stderr_apart_however_the_reads_split(
        frames: list[tuple[int, bytes]], sizes: list[int]) -> None:
    wire = b"".join(frame(s, p) for s, p in frames)
    out, err = BoundedCapture(100_000), BoundedCapture(100_000)
    demux = StreamDemux(out, err)
    pos, i = 0, 0
    while pos < len(wire):  # feed in reads of arbitrary sizes, splitting headers and payloads anywhere
        n = sizes[i % len(sizes)]
        demux.feed(wire[pos:pos + n])
        pos, i = pos + n, i + 1
    assert bytes(out._head) == b"".join(p for s, p in frames if s == 1)
    assert bytes(err._head) == b"".join(p for s, p in frames if s == 2)


def test_demux_drops_stdin_frames() -> None:
    out, err = BoundedCapture(10), BoundedCapture(10)
    StreamDemux(out, err).feed(frame(0, b"in") + frame(1, b"out"))
    assert (out.result(), err.result()) == (("out", False), ("", False))


def test_job_dirs_are_private_to_the_sandbox_user_and_inputs_read_only(tmp_path: Path) -> None:
    uid, gid = os.geteuid(), os.getegid()  # as whoever runs the tests; the podman tests cover 65534
    factory = JobDirFactory(tmp_path / "mounts", uid, gid)
    dirs = factory.create("job-1", {"a.txt": b"hello"})
    for d in (dirs.root, dirs.workspace, dirs.job, dirs.inputs, dirs.job / "artifacts"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((dirs.inputs / "a.txt").stat().st_mode) == 0o444
    assert (dirs.inputs / "a.txt").read_bytes() == b"hello"
    assert (dirs.job / "result.json").read_bytes() == b""
    with pytest.raises(FileExistsError):  # a second run of the same id never reuses (or deletes) the first's dir
        factory.create("job-1", {})
    assert factory.leftovers() == ["job-1"]
    factory.remove("job-1")
    assert factory.leftovers() == []


@pytest.mark.parametrize("job_id", ["..", "../x", "a/b", ".hidden", "", "x" * 200])
def test_unsafe_job_ids_are_refused(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(UnsafePath):
        JobDirFactory(tmp_path, os.geteuid(), os.getegid()).create(job_id, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "", "x" * 256, "a\0b"])
def test_unsafe_input_names_are_refused_before_any_dir_is_made(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        JobDirFactory(tmp_path / "m", os.geteuid(), os.getegid()).create("job-1", {name: b"x"})
    assert not (tmp_path / "m" / "job-1").exists()


def test_the_sandbox_user_must_be_numeric_and_not_root() -> None:
    assert Confinement("65534:65534", 1, 1, 1).ids() == (65534, 65534)
    assert Confinement("1000", 1, 1, 1).ids() == (1000, 1000)
    for bad in ("nobody", "0:0", "1000:users"):
        with pytest.raises(ValueError):
            Confinement(bad, 1, 1, 1).ids()


def test_image_allowlist_globs_match_the_reference_as_sent() -> None:
    assert image_allowed("anything:1", [])
    patterns = ["localhost/cynode-*", "docker.io/library/python:3.*"]
    assert image_allowed("localhost/cynode-sandbox:0.1", patterns)
    assert image_allowed("docker.io/library/python:3.12", patterns)
    assert not image_allowed("python:3.12", patterns)
    assert not image_allowed("evil/localhost/cynode-x", patterns)


def test_endpoint_candidates_follow_the_spec_order() -> None:
    env = {"DOCKER_HOST": "unix:///d.sock", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert candidate_urls(WorkerSandbox(docker_host="unix:///cfg.sock"), env) == [
        "unix:///cfg.sock", "unix:///d.sock", "unix:///run/user/1000/podman/podman.sock",
        "unix:///run/podman/podman.sock"]
    assert candidate_urls(WorkerSandbox(), {}) == ["unix:///run/podman/podman.sock"]


def test_no_engine_and_no_service_allowed_is_unavailable_not_a_host_fallback(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"
    assert not pings(dead)
    endpoint = DockerEndpoint(WorkerSandbox(docker_host=dead, start_podman_service=False), tmp_path,
                              environ={"PATH": os.environ["PATH"]})
    with pytest.raises(EndpointUnavailable, match="no container engine answers"):
        endpoint.start_sync()
    no_podman = DockerEndpoint(WorkerSandbox(docker_host=dead), tmp_path, environ={"PATH": str(tmp_path)})
    with pytest.raises(EndpointUnavailable, match="podman is not installed"):
        no_podman.start_sync()


def test_the_podman_service_gets_no_worker_secrets() -> None:
    env = podman_env({"PATH": "/usr/bin", "HOME": "/root", "CYNODE_JWT_SECRET": "s", "HTTPS_PROXY": "http://p",
                      "AWS_SECRET_ACCESS_KEY": "k"})
    assert set(env) == {"PATH", "HOME", "CONTAINERS_CONF"}
    assert Path(env["CONTAINERS_CONF"]).is_file()

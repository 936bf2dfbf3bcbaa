"""`python -m cynode.worker.image ensure`: builds the sandbox image once, then returns at once; clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cynode.worker import image

IMAGE = "localhost/cynode-sandbox:0.1"


def ensure_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cynode.worker.image", "ensure", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


@pytest.mark.podman
def test_ensure_is_idempotent_and_fast_once_the_image_is_there() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    first = ensure_cli("--image", IMAGE)  # may build (debootstrap ~45 s on a fresh machine, else the cached rootfs)
    if first.returncode == 2:
        pytest.skip(f"the sandbox image cannot be built here: {first.stderr.strip()}")
    assert first.returncode == 0, first.stderr
    t0 = time.monotonic()
    again = ensure_cli("--image", IMAGE)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert time.monotonic() - t0 < 5
    assert image.image_hash(IMAGE) == image.build_hash(image.containers_dir() / "Containerfile.local")
    probe = subprocess.run(["podman", "run", "--rm", "--network=none", IMAGE, "sh", "-c",
                            "id -u; for c in cynode-inference-shim cynode-model-call python3 curl zip unzip ps; do "
                            "command -v $c; done"],
                           capture_output=True, text=True, env=image.podman_env(), check=False)
    assert probe.stdout.split() == ["65534", "/usr/local/bin/cynode-inference-shim",
                                    "/usr/local/bin/cynode-model-call", "/usr/bin/python3", "/usr/bin/curl",
                                    "/usr/bin/zip", "/usr/bin/unzip", "/usr/bin/ps"], probe.stderr


def test_a_missing_podman_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    r = ensure_cli("--image", IMAGE, env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "sandbox-image: error: podman is not installed (apt-get install podman runc uidmap slirp4netns fuse-overlayfs)"]


def test_base_image_tag_follows_the_image_tag() -> None:
    assert image.base_tag("localhost/cynode-sandbox:0.1") == "localhost/cynode-sandbox-base:0.1"
    assert image.base_tag("localhost:5000/sandbox") == "localhost:5000/sandbox-base:latest"


@pytest.mark.podman
def test_a_forced_local_build_under_another_tag_gives_a_working_image() -> None:
    """The no-registry path (cached debootstrap rootfs -> podman import -> podman build), run in-process."""
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.skip("podman or debootstrap is not installed")
    tag = "localhost/cynode-sandbox-buildtest:0.1"
    try:
        assert image.main(["ensure", "--image", tag, "--method", "local", "--force"]) == 0
        assert image.image_hash(tag) == image.build_hash(image.containers_dir() / "Containerfile.local")
        assert image.main(["ensure", "--image", tag]) == 0  # current: nothing to do
        probe = subprocess.run(["podman", "run", "--rm", "--network=none", tag, "id", "-u"], capture_output=True,
                               text=True, env=image.podman_env(), check=False)
        assert probe.stdout.strip() == "65534", probe.stderr
    finally:
        for t in (tag, image.base_tag(tag)):
            subprocess.run(["podman", "rmi", "-f", t], capture_output=True, env=image.podman_env(), check=False)

"""The local sandbox image: `python -m cynode.worker.image ensure --image localhost/cynode-sandbox:0.1`.

Runs on every `make test` / `make run`, so an up-to-date image returns at once (one `podman image inspect`).  The
image carries a label with a hash of its build inputs (Containerfiles, baked scripts, package list); when they change
it is rebuilt.  Where a registry answers, `containers/sandbox/Containerfile` is built (FROM debian:bookworm-slim).
Otherwise (the build and CI machines): `debootstrap --variant=minbase` makes a Debian rootfs (cached as a tarball
under ~/.cache/cynode, so only the first build pays the ~45 s), `podman import` turns it into a base image and
`podman build` of `Containerfile.local` adds the scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cynode.worker.podman import podman_env

SUITE = "bookworm"
# minbase already brings /bin/sh (dash), coreutils (env), findutils, tar, gzip; worker.md §13 wants these too.
PACKAGES = ("procps", "python3", "curl", "ca-certificates", "unzip", "zip")
HASH_LABEL = "ai.cynode.sandbox.build-hash"
SCRIPTS_DIR = Path(__file__).with_name("sandbox_scripts")
REGISTRY_PROBE = "https://registry-1.docker.io/v2/"
# Trimmed from the rootfs before it is tarred: package caches and docs nobody reads inside a sandbox.
_PRUNE = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
          "var/log")


class BuildError(Exception):
    """The image could not be built; the message is one line for the user. `code` 2 = a tool is missing."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def containers_dir() -> Path:
    """containers/sandbox of the source checkout this package runs from."""
    path = Path(__file__).resolve().parents[2] / "containers" / "sandbox"
    if not (path / "Containerfile.local").is_file():
        raise BuildError(f"the sandbox Containerfiles are not at {path} (build from a cynode source checkout)")
    return path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cynode"


def _podman(*args: str, check: bool = True, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("podman") is None:
        raise BuildError("podman is not installed (apt-get install podman runc uidmap slirp4netns fuse-overlayfs)", 2)
    proc = subprocess.run(["podman", *args], env=podman_env(), stdin=stdin, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise BuildError(f"podman {args[0]} failed: {_last_line(proc.stderr or proc.stdout)}")
    return proc


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _say(msg: str) -> None:
    print(f"sandbox-image: {msg}", file=sys.stderr, flush=True)


def build_hash(containerfile: Path) -> str:
    """Hash of everything that goes into the image, so a changed script or Containerfile triggers a rebuild."""
    h = hashlib.sha256(containerfile.read_bytes())
    for path in sorted(SCRIPTS_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(" ".join(PACKAGES).encode())
    return h.hexdigest()[:16]


def image_hash(image: str) -> str | None:
    """The build-hash label of a local image; None when the image is not there, '' when it has no label."""
    proc = _podman("image", "inspect", "--format", f'{{{{index .Labels "{HASH_LABEL}"}}}}', image, check=False)
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return "" if value == "<no value>" else value


def registry_reachable(timeout: float = 3.0) -> bool:
    """Any HTTP answer from Docker Hub's registry API counts (401 is the normal one)."""
    try:
        urllib.request.urlopen(REGISTRY_PROBE, timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Concurrent `make test` runs build the image once: the second waits, then finds it present."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "sandbox-image.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def base_tag(image: str) -> str:
    """localhost/cynode-sandbox:0.1 -> localhost/cynode-sandbox-base:0.1"""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        name, tag = image, "latest"
    return f"{name}-base:{tag}"


def rootfs_tarball() -> Path:
    """The cached debootstrap rootfs; debootstrap runs only when it is missing."""
    key = hashlib.sha256(f"{SUITE} minbase {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    tarball = cache_dir() / f"rootfs-debian-{SUITE}-{key}.tar"
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (apt-get install debootstrap), and no registry is reachable", 2)
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root: run `make sandbox-image` as root once, or build where a registry "
                         "is reachable", 2)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir()))
    try:
        rootfs = work / "rootfs"
        _say(f"debootstrap {SUITE} (minbase + {', '.join(PACKAGES)}); about a minute, cached afterwards")
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                               str(rootfs)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"debootstrap failed: {_last_line(proc.stdout + proc.stderr)}")
        _trim(rootfs)
        partial = work / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.replace(tarball)  # atomic: a half-written tarball is never taken for a cached one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def _trim(rootfs: Path) -> None:
    for rel in _PRUNE:
        d = rootfs / rel
        if d.is_dir():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    (rootfs / "etc" / "resolv.conf").write_text("")  # the build host's resolvers do not belong in the image
    for mountpoint in ("workspace", "job", "run/cynode"):
        (rootfs / mountpoint).mkdir(parents=True, exist_ok=True)


def build_local(image: str, digest: str) -> None:
    base = base_tag(image)
    if image_hash(base) is None:
        tarball = rootfs_tarball()
        _say(f"podman import {tarball.name} -> {base}")
        with open(tarball, "rb") as f:
            _podman("import", "-", base, stdin=f.fileno())
    _say(f"podman build {image} from {base}")
    _podman("build", "--pull=never", "-f", str(containers_dir() / "Containerfile.local"), "--build-arg",
            f"BASE={base}", "--label", f"{HASH_LABEL}={digest}", "-t", image, str(SCRIPTS_DIR))


def build_from_registry(image: str, digest: str) -> None:
    _say(f"podman build {image} from debian:bookworm-slim")
    _podman("build", "-f", str(containers_dir() / "Containerfile"), "--label", f"{HASH_LABEL}={digest}",
            "-t", image, str(SCRIPTS_DIR))


def ensure(image: str, method: str = "auto", force: bool = False) -> str:
    """Make `image` present and current; returns what was done: present | built-registry | built-local."""
    local_digest = build_hash(containers_dir() / "Containerfile.local")
    registry_digest = build_hash(containers_dir() / "Containerfile")
    if not force and image_hash(image) in (local_digest, registry_digest):
        return "present"
    with _build_lock():
        if not force and image_hash(image) in (local_digest, registry_digest):
            return "present"  # built by a concurrent run while we waited for the lock
        if method == "registry":
            build_from_registry(image, registry_digest)
            return "built-registry"
        if method == "auto" and registry_reachable():
            try:
                build_from_registry(image, registry_digest)
                return "built-registry"
            except BuildError as e:  # e.g. a rate limit or a proxy that only lets the probe through
                _say(f"{e}; building from a local Debian rootfs instead")
        build_local(image, local_digest)
        return "built-local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cynode.worker.image", description="Build the sandbox image.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ensure", help="build the image unless it is present and current")
    p.add_argument("--image", default="localhost/cynode-sandbox:0.1")
    p.add_argument("--method", choices=("auto", "registry", "local"), default="auto",
                   help="auto: from the registry when one answers, else debootstrap + podman import")
    p.add_argument("--force", action="store_true", help="rebuild even when the image is current")
    args = parser.parse_args(argv)
    try:
        done = ensure(args.image, args.method, args.force)
    except BuildError as e:
        print(f"sandbox-image: error: {e}", file=sys.stderr)
        return e.code
    if done != "present":
        _say(f"{args.image} ready ({done})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

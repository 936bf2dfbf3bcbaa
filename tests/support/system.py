"""Start the real `cynode serve` as a subprocess on free ports (used by pytest and by behave)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    def __init__(self, roles: str = "all", *, env: dict[str, str] | None = None, data_dir: str | Path | None = None,
                 args: tuple[str, ...] = (), name: str = "serve") -> None:
        self.roles = roles
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix=f"cynode-{name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ready_file = self.dir / f"{name}.ready.json"
        self.log_path = self.dir / f"{name}.log"
        self.args = args
        self.env = {
            **os.environ,
            "CYNODE_DATA_DIR": str(self.dir),
            "CYNODE_GATEWAY_LISTEN_ADDR": "127.0.0.1:0",
            "CYNODE_CONTROLPLANE_LISTEN_ADDR": "127.0.0.1:0",
            "CYNODE_WORKER_LISTEN_ADDR": "127.0.0.1:0",
            "CYNODE_PMA_LISTEN_ADDR": "127.0.0.1:0",
            "CYNODE_LOGGING_FORMAT": "json",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}

    def start(self, timeout: float = 60.0) -> ServeProcess:
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cynode", "serve", "--role", self.roles, "--ready-file", str(self.ready_file),
             *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"cynode serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"cynode serve did not listen within {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.02)
        self.urls = json.loads(self.ready_file.read_text())
        return self

    def url(self, listener: str = "gateway") -> str:
        return self.urls[listener]

    def wait_accepting(self, timeout: float = 60.0, listener: str = "gateway") -> None:
        """Wait until startup finished (API routes stop answering 503 'starting')."""
        self._poll(lambda: httpx.get(self.url(listener) + "/v1/__probe", timeout=2).status_code != 503, timeout)

    def wait_ready(self, timeout: float = 120.0, listener: str = "gateway") -> None:
        self._poll(lambda: httpx.get(self.url(listener) + "/readyz", timeout=3).status_code == 200, timeout)

    def auth_headers(self, password: str, handle: str = "admin") -> dict[str, str]:
        """Log in on the gateway as `handle`; the bearer header for that session."""
        r = httpx.post(self.url("gateway") + "/v1/auth/login", json={"handle": handle, "password": password},
                       timeout=30)
        r.raise_for_status()
        return {"Authorization": "Bearer " + r.json()["access_token"]}

    def readiness(self, listener: str = "gateway") -> dict[str, Any]:
        return httpx.get(self.url(listener) + "/readyz", headers={"Accept": "application/json"}, timeout=5).json()

    def _poll(self, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"cynode serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if check():
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.2)
        raise TimeoutError(f"condition not met within {timeout} s ({last}):\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def cynode_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
               timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the `cynode` command as a user would (a real subprocess)."""
    return subprocess.run([sys.executable, "-m", "cynode", *args], env={**os.environ, **(env or {})},
                          input=input, capture_output=True, text=True, timeout=timeout, cwd=REPO)

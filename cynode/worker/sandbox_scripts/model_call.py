#!/usr/bin/env python3
"""cynode-model-call: the fixed model-call script of a prompt task's sandbox job (orchestrator.md §7.2 Option A).

Prompt from env CYNODE_PROMPT, else the file /job/inputs/prompt.txt; model from CYNODE_MODEL.  POSTs
`/api/generate` (stream false) through INFERENCE_PROXY_URL (`http+unix://<percent-encoded socket path>`), falling
back to OLLAMA_BASE_URL when the socket cannot be reached; prints the reply on stdout.  Any failure: exit 1 with
the reason on stderr.  Baked into the sandbox image as /usr/local/bin/cynode-model-call; stdlib only.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROMPT_FILE = Path("/job/inputs/prompt.txt")
TIMEOUT_S = 120.0


class CallError(Exception):
    """A failure the user should read on stderr."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket: the host part of the URL is only the Host header."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def connection_for(base_url: str, timeout: float = TIMEOUT_S) -> tuple[http.client.HTTPConnection, str]:
    """(connection, path prefix) for an http://, https:// or http+unix://%2F... base URL."""
    parts = urlsplit(base_url)
    prefix = parts.path.rstrip("/")
    if parts.scheme == "http+unix":
        return UnixHTTPConnection(unquote(parts.netloc), timeout), prefix
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.netloc, timeout=timeout), prefix
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.netloc, timeout=timeout), prefix
    raise CallError(f"unsupported inference URL scheme {parts.scheme!r}")


def generate(base_url: str, model: str, prompt: str, timeout: float = TIMEOUT_S) -> str:
    conn, prefix = connection_for(base_url, timeout)
    request: dict[str, object] = {"model": model, "prompt": prompt, "stream": False}
    num_predict = os.environ.get("CYNODE_NUM_PREDICT", "")
    if num_predict.isdigit():
        request["options"] = {"num_predict": int(num_predict)}
    body = json.dumps(request).encode()
    try:
        conn.request("POST", f"{prefix}/api/generate", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise CallError(f"inference answered HTTP {resp.status}: {data[:500].decode('utf-8', 'replace')}")
    try:
        reply = json.loads(data)["response"]
    except (ValueError, KeyError, TypeError):
        raise CallError("inference answered without a 'response' field") from None
    if not isinstance(reply, str):
        raise CallError("inference answered a non-text 'response'")
    return reply


def read_prompt() -> str:
    prompt = os.environ.get("CYNODE_PROMPT")
    if prompt is not None:
        return prompt
    try:
        return PROMPT_FILE.read_text(encoding="utf-8")
    except OSError as e:
        raise CallError(f"no prompt: CYNODE_PROMPT is unset and {PROMPT_FILE} is unreadable ({e.strerror})") from None


def run() -> str:
    model = os.environ.get("CYNODE_MODEL", "").strip()
    if not model:
        raise CallError("CYNODE_MODEL is not set")
    prompt = read_prompt()
    urls = [u for u in (os.environ.get("INFERENCE_PROXY_URL"), os.environ.get("OLLAMA_BASE_URL")) if u]
    if not urls:
        raise CallError("no inference endpoint: neither INFERENCE_PROXY_URL nor OLLAMA_BASE_URL is set")
    reasons = []
    for url in urls:  # the Unix socket first; the loopback URL only when the socket cannot be reached
        try:
            return generate(url, model, prompt)
        except (OSError, http.client.HTTPException) as e:
            reasons.append(f"{urlsplit(url).scheme}: {e}")
    raise CallError("inference unreachable (" + "; ".join(reasons) + ")")


def main() -> int:
    try:
        reply = run()
    except CallError as e:
        print(f"cynode-model-call: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(reply)
    if not reply.endswith("\n"):
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small synchronous client for the User API Gateway, used by the CLI commands.

It attaches the bearer token, refreshes once on a 401 when a refresh token is stored (and saves the new pair), and
turns every failure into `CliError` with the exit code cli.md gives: 3 auth, 4 not found, 5 conflict, 6 validation,
7 gateway or network, 8 internal. The problem+json `detail` is the message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx

from cynode import __version__
from cynode.cli.common import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_GATEWAY,
    EXIT_INTERNAL,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    EXIT_VALIDATION,
    CliState,
    fail,
)
from cynode.cli.config_file import ClientConfig, ConfigFileError, CredentialHelperError, load, save

F = TypeVar("F", bound=Callable[..., Any])

LOGIN_HINT = "not logged in: run `cynode auth login` (or set CYNODE_TOKEN)"


class CliError(Exception):
    def __init__(self, message: str, code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 409:
        return EXIT_CONFLICT
    if status in (400, 413, 415, 422):
        return EXIT_VALIDATION
    if status == 429 or status >= 500:
        return EXIT_GATEWAY
    return EXIT_INTERNAL


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return f"HTTP {r.status_code}"


class GatewayClient:
    def __init__(self, cfg: ClientConfig, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.cfg = cfg
        self.http = httpx.Client(base_url=cfg.url, timeout=timeout, transport=transport,
                                 headers={"User-Agent": f"cynode-cli/{__version__}"})
        self._token: str | None = None
        self._source = "none"
        self._resolved = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ----------------------------------------------------------------------------------------------------

    def token(self) -> str | None:
        if not self._resolved:
            try:
                self._token, self._source = self.cfg.resolve_token()
            except CredentialHelperError as e:
                raise CliError(str(e), EXIT_AUTH) from None
            self._resolved = True
        return self._token

    def _try_refresh(self) -> bool:
        """After a 401: rotate the stored refresh token once; True when a new access token is in place."""
        if self._source != "file" or not self.cfg.refresh_token:
            return False
        try:
            r = self.http.post("/v1/auth/refresh", json={"refresh_token": self.cfg.refresh_token})
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        pair = r.json()
        self.cfg.token, self.cfg.refresh_token = pair["access_token"], pair["refresh_token"]
        save(self.cfg)
        self._token = self.cfg.token
        return True

    # -- requests --------------------------------------------------------------------------------------------------

    def send(self, method: str, path: str, *, auth: bool = True, ok: tuple[int, ...] = (), **kw: Any) -> httpx.Response:
        """Send a request; any non-2xx (unless listed in `ok`) becomes a CliError with the contract's exit code."""
        headers: dict[str, str] = dict(kw.pop("headers", None) or {})
        if auth:
            token = self.token()
            if not token:
                raise CliError(LOGIN_HINT, EXIT_AUTH)
            headers["Authorization"] = f"Bearer {token}"
        r = self._send(method, path, headers, kw)
        if r.status_code == 401 and auth and self._try_refresh():
            headers["Authorization"] = f"Bearer {self._token}"
            r = self._send(method, path, headers, kw)
        if r.is_success or r.status_code in ok:
            return r
        message = _detail(r)
        if r.status_code == 401 and auth:
            message += "; run `cynode auth login`"
        raise CliError(message, exit_code_for(r.status_code), r.status_code)

    def _send(self, method: str, path: str, headers: dict[str, str], kw: Mapping[str, Any]) -> httpx.Response:
        try:
            return self.http.request(method, path, headers=headers, **kw)
        except httpx.TimeoutException:
            raise CliError(f"the gateway at {self.cfg.url} did not answer in time", EXIT_GATEWAY) from None
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the gateway at {self.cfg.url} ({type(e).__name__})", EXIT_GATEWAY) from None

    def get(self, path: str, **kw: Any) -> Any:
        return self.send("GET", path, **kw).json()

    def post(self, path: str, **kw: Any) -> Any:
        r = self.send("POST", path, **kw)
        return r.json() if r.content else None

    def delete(self, path: str, **kw: Any) -> None:
        self.send("DELETE", path, **kw)


def seg(value: str) -> str:
    """An id or name from the command line as exactly one URL path segment: '/', '.', '..', '?', '#' or control
    characters in it cannot change which endpoint is called (`task cancel x/../../auth/logout`)."""
    return quote(value, safe="").replace(".", "%2E")


# -- CLI glue ----------------------------------------------------------------------------------------------------

def load_config(obj: Any) -> ClientConfig:
    """The client config for this invocation (`-c` wins); a file that does not parse is a usage error (exit 2)."""
    try:
        return load(getattr(obj, "config_path", None))
    except ConfigFileError as e:
        fail(f"config: {e}", EXIT_USAGE)


def run_cli(fn: F) -> F:
    """Decorator for client commands (under click.pass_obj): `--json` after the command (the same as `-o json`
    before it), and CliError -> one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(obj: CliState, *args: Any, json_output: bool = False, **kwargs: Any) -> Any:
        if json_output:
            obj.output = "json"
        try:
            return fn(obj, *args, **kwargs)
        except CliError as e:
            fail(e.message, e.code)

    return click.option("--json", "json_output", is_flag=True, help="JSON output (the same as -o json).")(
        wrapper)  # type: ignore[return-value]

"""`cynode auth login|logout|whoami` and `cynode auth token create|list|revoke` (cli.md)."""

from __future__ import annotations

import sys
from typing import Any

import click
import httpx

from cynode.cli.client import CliError, GatewayClient, load_config, run_cli, seg
from cynode.cli.common import EXIT_USAGE, CliState, fail
from cynode.cli.config_file import save
from cynode.cli.output import emit_json, emit_table


@click.group()
def auth() -> None:
    """Log in and out, show who you are, manage personal API tokens."""


@auth.command()
@click.option("-u", "--user", "--handle", "handle", default=None, help="Your handle (asked for when omitted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_obj
@run_cli
def login(obj: CliState, handle: str | None, password_stdin: bool) -> None:
    """Log in to the gateway and store the tokens (file mode 0600)."""
    cfg = load_config(obj)
    if handle is None:
        handle = click.prompt("Handle", err=True).strip()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, err=True)
    if not handle or not password:
        fail("a handle and a password are required", EXIT_USAGE)
    with GatewayClient(cfg) as client:
        pair = client.post("/v1/auth/login", auth=False, json={"handle": handle, "password": password})
        cfg.token, cfg.refresh_token = pair["access_token"], pair["refresh_token"]
        cfg.gateway_url = cfg.url
        save(cfg)
        me = client.get("/v1/users/me")
    if obj.json:
        emit_json({"handle": me["handle"], "id": me["id"], "gateway_url": cfg.url})
    elif not obj.quiet:
        click.echo(f"Logged in to {cfg.url} as {me['handle']}.", err=True)


@auth.command()
@click.pass_obj
@run_cli
def logout(obj: CliState) -> None:
    """Forget the stored tokens (and end the session on the gateway when it answers)."""
    cfg = load_config(obj)
    had = bool(cfg.token or cfg.refresh_token)
    if cfg.token:
        try:
            with GatewayClient(cfg, timeout=5.0) as client:
                body = {"refresh_token": cfg.refresh_token} if cfg.refresh_token else None
                client.http.post("/v1/auth/logout", json=body,
                                 headers={"Authorization": f"Bearer {cfg.token}"})
        except (httpx.HTTPError, CliError):
            pass  # best effort: local state is cleared regardless
    if had:
        cfg.token = cfg.refresh_token = None
        save(cfg)
    if obj.json:
        emit_json({"logged_out": True})
    elif not obj.quiet:
        click.echo("Logged out.", err=True)


def _user_rows(me: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field": k, "value": ", ".join(v) if isinstance(v, list) else v} for k, v in me.items()]


@auth.command()
@click.pass_obj
@run_cli
def whoami(obj: CliState) -> None:
    """Show the user the stored token belongs to."""
    with GatewayClient(load_config(obj)) as client:
        me = client.get("/v1/users/me")
    emit_table(obj, "Who am I", ["field", "value"], _user_rows(me), raw=me)


@auth.group()
def token() -> None:
    """Personal API tokens for scripts and long-lived clients."""


@token.command("create")
@click.argument("name")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None, help="Expiry (default: never).")
@click.pass_obj
@run_cli
def token_create(obj: CliState, name: str, expires_in_days: int | None) -> None:
    """Create a token; it is shown only this once."""
    body: dict[str, Any] = {"name": name}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    with GatewayClient(load_config(obj)) as client:
        created = client.post("/v1/auth/tokens", json=body)
    if obj.json:
        emit_json(created)
        return
    click.echo(created["token"])
    if not obj.quiet:
        click.echo(f"token {created['name']!r} ({created['id']}) created; it is shown only once", err=True)


@token.command("list")
@click.pass_obj
@run_cli
def token_list(obj: CliState) -> None:
    """List your tokens (never their values)."""
    with GatewayClient(load_config(obj)) as client:
        body = client.get("/v1/auth/tokens")
    emit_table(obj, "API tokens", ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"],
               body["tokens"], raw=body)


@token.command("revoke")
@click.argument("token_id")
@click.pass_obj
@run_cli
def token_revoke(obj: CliState, token_id: str) -> None:
    """Revoke a token at once."""
    with GatewayClient(load_config(obj)) as client:
        client.delete(f"/v1/auth/tokens/{seg(token_id)}")
    if obj.json:
        emit_json({"id": token_id, "revoked": True})
    elif not obj.quiet:
        click.echo(f"token {token_id} revoked", err=True)

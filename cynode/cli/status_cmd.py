"""`cynode status`: is the gateway reachable, is the system ready (and why not), who am I."""

from __future__ import annotations

from typing import Any

import click
import httpx

from cynode.cli.client import CliError, GatewayClient, load_config, run_cli
from cynode.cli.common import EXIT_GATEWAY, CliState
from cynode.cli.output import emit_json, emit_table


@click.command()
@click.pass_obj
@run_cli
def status(obj: CliState) -> None:
    """Gateway reachability, readiness with its reasons, and the logged-in user (if any)."""
    cfg = load_config(obj)
    with GatewayClient(cfg, timeout=10.0) as client:
        try:
            healthy = client.http.get("/healthz").status_code == 200
            ready_r = client.http.get("/readyz", headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the gateway at {cfg.url} ({type(e).__name__})", EXIT_GATEWAY) from None
        try:
            readiness: dict[str, Any] = ready_r.json()
        except ValueError:
            readiness = {"status": "unknown"}
        user: dict[str, Any] | None = None
        user_error = None
        try:
            if client.token():
                user = client.get("/v1/users/me")
        except CliError as e:
            user_error = e.message
    doc: dict[str, Any] = {"gateway_url": cfg.url, "healthy": healthy, "ready": ready_r.status_code == 200,
                           "readiness": readiness}
    if user is not None:
        doc["user"] = {"id": user["id"], "handle": user["handle"], "roles": user.get("roles", [])}
    elif user_error:
        doc["user_error"] = user_error
    if obj.json:
        emit_json(doc)
        return
    rows = [{"check": "gateway", "state": "reachable" if healthy else "unhealthy", "detail": cfg.url},
            {"check": "ready", "state": "yes" if doc["ready"] else "no",
             "detail": "" if doc["ready"] else f"{readiness.get('reason_code', '')}: {readiness.get('reason', '')}"}]
    for c in readiness.get("checks", []):
        rows.append({"check": f"  {c.get('name')}", "state": "ok" if c.get("ok") else "failing",
                     "detail": c.get("detail") or ""})
    if user is not None:
        rows.append({"check": "user", "state": user["handle"], "detail": ", ".join(user.get("roles", []))})
    else:
        rows.append({"check": "user", "state": "not logged in", "detail": user_error or "run `cynode auth login`"})
    emit_table(obj, "cynode status", ["check", "state", "detail"], rows)

"""`cynode node list|get|enable|disable|drain|refresh-config`: worker nodes, for admins."""

from __future__ import annotations

from typing import Any

import click

from cynode.cli.client import GatewayClient, load_config, run_cli, seg
from cynode.cli.common import CliState
from cynode.cli.output import emit_more, emit_table

COLUMNS = ["node_slug", "status", "dispatchable", "running_jobs", "last_heartbeat", "config_ack_status"]


def _show(obj: CliState, nodes: list[dict[str, Any]], raw: Any) -> None:
    emit_table(obj, "Nodes", COLUMNS, nodes, raw=raw)  # -o json prints `raw`


@click.group("node")
def node() -> None:
    """Worker nodes: state, dispatchability, enable/disable/drain (admin)."""


@node.command("list")
@click.option("-l", "--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", default=None)
@click.pass_obj
@run_cli
def list_nodes(obj: CliState, limit: int, cursor: str | None) -> None:
    """Every registered node, newest first."""
    with GatewayClient(load_config(obj)) as client:
        doc = client.get("/v1/nodes", params={"limit": limit, **({"cursor": cursor} if cursor else {})})
    _show(obj, doc["nodes"], doc)
    emit_more(obj, "cynode node list", doc)


@node.command("get")
@click.argument("ref")
@click.pass_obj
@run_cli
def get_node(obj: CliState, ref: str) -> None:
    """One node, by id or slug."""
    with GatewayClient(load_config(obj)) as client:
        doc = client.get(f"/v1/nodes/{seg(ref)}")
    _show(obj, [doc], doc)


def _action(verb: str, help_text: str) -> None:
    @node.command(verb, help=help_text)
    @click.argument("ref")
    @click.pass_obj
    @run_cli
    def command(obj: CliState, ref: str) -> None:
        with GatewayClient(load_config(obj)) as client:
            doc = client.post(f"/v1/nodes/{seg(ref)}/{verb}")
        _show(obj, [doc], doc)


_action("enable", "Let a node take jobs again.")
_action("disable", "Stop dispatching to a node and refuse it configuration.")
_action("drain", "Take no new jobs on a node; running jobs finish.")
_action("refresh-config", "Issue the node a fresh configuration version.")

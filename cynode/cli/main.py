"""Root of the `cynode` command. Client commands talk only to the User API Gateway; `serve` and `db` run the server."""

from __future__ import annotations

import sys

import click

from cynode import __version__
from cynode.cli import server
from cynode.cli.auth_cmd import auth
from cynode.cli.chat_cmd import chat
from cynode.cli.common import CliState, global_options
from cynode.cli.node_cmd import node
from cynode.cli.status_cmd import status
from cynode.cli.task_cmd import task


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@global_options
@click.pass_context
def cli(ctx: click.Context, config: str | None, output: str, quiet: bool, no_color: bool) -> None:
    """cynode: a self-hosted, local-first multi-agent AI orchestrator."""
    ctx.obj = CliState(config_path=config, output=output, quiet=quiet, no_color=no_color)


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"cynode {__version__}")


server.register(cli)
cli.add_command(status)
cli.add_command(auth)
cli.add_command(task)
cli.add_command(chat)
cli.add_command(node)


def main() -> None:
    try:
        cli.main(prog_name="cynode", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)

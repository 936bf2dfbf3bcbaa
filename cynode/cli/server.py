"""Server-side commands: `cynode serve` and `cynode db migrate|rollback|status`."""

from __future__ import annotations

import os
import sys

import click

from cynode.cli.common import EXIT_USAGE, fail
from cynode.config import Settings, load_settings
from cynode.errors import ConfigError

server_config = click.option(
    "--config", "server_config", type=click.Path(dir_okay=False), default=None,
    help="Server config file (default: $CYNODE_CONFIG, else ./cynode.toml if present).",
)


def _settings(path: str | None, overrides: dict[str, str | None] | None = None) -> Settings:
    env = dict(os.environ)
    env.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return load_settings(path, env)
    except ConfigError as e:
        fail(f"config: {e}", EXIT_USAGE)


@click.command()
@click.option("--role", "role", default="all", show_default=True,
              help="Roles to run: orchestrator, worker, pma or all (comma-separated combinations).")
@server_config
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations at start.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log format (default: text).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--pma-role", type=click.Choice(["project_manager", "project_analyst"]), default=None,
              help="Agent role for --role pma.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Write the bound listener URLs as JSON here once listening (for tests and tools).")
def serve(role: str, server_config: str | None, no_migrate: bool, log_format: str | None, log_level: str | None,
          pma_role: str | None, ready_file: str | None) -> None:
    """Run the cynode server with the given roles."""
    from cynode.logs import setup_logging
    from cynode.serve import parse_roles, run

    settings = _settings(server_config, {"CYNODE_LOGGING_FORMAT": log_format, "CYNODE_LOGGING_LEVEL": log_level,
                                         "CYNODE_PMA_ROLE": pma_role})
    try:
        roles = parse_roles(role)
    except ConfigError as e:
        fail(str(e), EXIT_USAGE)
    setup_logging(settings.logging.format, settings.logging.level)
    try:
        import uvloop

        code = uvloop.run(run(settings, roles, migrate=not no_migrate, ready_file=ready_file))
    except ConfigError as e:
        fail(str(e), EXIT_USAGE)
    sys.exit(code)


@click.group()
def db() -> None:
    """Database migrations."""


def _db_url(settings: Settings) -> str:
    if settings.db.url:
        return str(settings.db.url)
    from cynode.db.embedded import start_embedded

    return start_embedded(settings.data_path)


@db.command("migrate")
@server_config
def db_migrate(server_config: str | None) -> None:
    """Apply every pending migration."""
    from cynode.db import migrate as m

    applied = m.migrate(_db_url(_settings(server_config)))
    click.echo("\n".join(f"applied {i}" for i in applied) or "nothing to apply")


@db.command("rollback")
@server_config
@click.option("--count", "-n", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def db_rollback(server_config: str | None, count: int, yes: bool) -> None:
    """Roll back the last applied migration(s)."""
    from cynode.db import migrate as m

    if not yes:
        click.confirm(f"Roll back the last {count} migration(s)? Their tables and data are dropped", abort=True)
    rolled = m.rollback(_db_url(_settings(server_config)), count)
    click.echo("\n".join(f"rolled back {i}" for i in rolled) or "nothing to roll back")


@db.command("status")
@server_config
@click.pass_obj
def db_status(obj: object, server_config: str | None) -> None:
    """List the migrations and whether each is applied."""
    from cynode.cli.output import emit_table
    from cynode.db import migrate as m

    rows = m.status(_db_url(_settings(server_config)))
    emit_table(obj, "Migrations", ["id", "applied"], [{"id": r.id, "applied": r.applied} for r in rows])


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(db)
